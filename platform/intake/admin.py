from django.contrib import admin

from intake.models import CaseEvent, CaseVote, FeedbackCase


class CaseEventInline(admin.TabularInline):
    model = CaseEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "actor", "action", "from_status", "to_status", "note", "changes"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(FeedbackCase)
class FeedbackCaseAdmin(admin.ModelAdmin):
    list_display = ["id", "scenario", "status", "source", "language", "author", "vote_count", "created_at"]
    list_filter = ["status", "source", "language"]
    search_fields = ["scenario", "prompt"]
    raw_id_fields = ["author", "duplicate_of"]
    show_full_result_count = False  # COUNT(*) on every page is what gets slow at scale
    # Status changes go through intake.services.case_transition (the triage pages),
    # so that each one is checked and lands in the audit trail.
    readonly_fields = [
        "uid",
        "status",
        "status_reason",
        "status_changed_at",
        "duplicate_of",
        "vote_count",
        "created_at",
    ]
    inlines = [CaseEventInline]


@admin.register(CaseEvent)
class CaseEventAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "action", "from_status", "to_status", "actor", "created_at"]
    list_filter = ["action", "to_status"]
    raw_id_fields = ["case", "actor"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(CaseVote)
class CaseVoteAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "user", "created_at"]
    raw_id_fields = ["case", "user"]

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ghsync.models import CommentStatus, DeliveryStatus, GithubItem, GithubSource, OutgoingComment, WebhookDelivery
from ghsync.services import comment_retry, delivery_reprocess


@admin.register(GithubSource)
class GithubSourceAdmin(admin.ModelAdmin):
    list_display = ["repo", "api_url", "enabled", "ask_for_examples", "report_back", "last_synced_at"]
    readonly_fields = ["cursors", "last_synced_at", "last_sync_summary", "sync_lease_until"]


@admin.register(GithubItem)
class GithubItemAdmin(admin.ModelAdmin):
    list_display = ["external_id", "kind", "author_login", "state", "skip_reason", "plus_one", "case"]
    list_filter = ["kind", "state", "source"]
    search_fields = ["external_id", "author_login"]
    raw_id_fields = ["case"]
    # What GitHub said is a record: items change only by syncing or webhooks.
    readonly_fields = [field.name for field in GithubItem._meta.fields]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["delivery_id", "event", "action", "status", "attempts", "result", "error", "received_at"]
    list_filter = ["status", "event"]
    search_fields = ["delivery_id"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.fields]
    actions = ["process_again"]

    @admin.action(description="Process the selected failed deliveries again")
    def process_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        failed = list(queryset.filter(status=DeliveryStatus.FAILED).values_list("pk", flat=True))
        for pk in failed:
            delivery_reprocess(delivery_id=pk, why=f"processed again by {request.user} (admin)")
        self.message_user(request, f"{len(failed)} failed deliveries queued again; others were left as they are.")


@admin.register(OutgoingComment)
class OutgoingCommentAdmin(admin.ModelAdmin):
    list_display = ["key", "kind", "status", "attempts", "last_error", "posted_at", "html_url"]
    list_filter = ["kind", "status"]
    readonly_fields = [field.name for field in OutgoingComment._meta.fields]
    actions = ["post_again"]

    @admin.action(description="Try the selected failed posts again")
    def post_again(self, request: HttpRequest, queryset: QuerySet[OutgoingComment]) -> None:
        failed = list(queryset.filter(status=CommentStatus.FAILED).values_list("pk", flat=True))
        for pk in failed:
            comment_retry(comment_id=pk)
        self.message_user(request, f"{len(failed)} failed posts queued again; others were left as they are.")

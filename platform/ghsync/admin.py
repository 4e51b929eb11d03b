from django.contrib import admin

from ghsync.models import GithubItem, GithubSource, OutgoingComment, WebhookDelivery


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
    list_display = ["delivery_id", "event", "action", "status", "result", "received_at"]
    list_filter = ["event", "status"]
    readonly_fields = ["delivery_id", "event", "action", "payload", "status", "result", "received_at", "processed_at"]


@admin.register(OutgoingComment)
class OutgoingCommentAdmin(admin.ModelAdmin):
    list_display = ["key", "kind", "status", "attempts", "posted_at", "html_url"]
    list_filter = ["kind", "status"]
    readonly_fields = [field.name for field in OutgoingComment._meta.fields]

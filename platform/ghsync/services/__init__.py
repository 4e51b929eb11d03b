"""Every write of the GitHub intake (a package: sources, items, sync, webhooks, comments, priority).

Other apps call `report_release(release=..., dry_run=False)` after publishing a release.
"""

from ghsync.services.comments import (
    ask_for_example_intent,
    comment_fail,
    comment_intent,
    comment_post,
    comment_post_run,
    comment_retry,
    comments_sweep,
    release_report_plan,
    report_release,
)
from ghsync.services.items import Outcome, PayloadError, external_id_for, item_mark_deleted, item_upsert
from ghsync.services.priority import priorities_refresh, priority_for
from ghsync.services.sources import (
    source_claim,
    source_client,
    source_create_or_update,
    source_release,
    source_set_options,
)
from ghsync.services.sync import SyncSummary, source_sync
from ghsync.services.webhooks import (
    DeliveryRun,
    deliveries_sweep,
    delivery_claim,
    delivery_id_error,
    delivery_process,
    delivery_reprocess,
    delivery_run,
    webhook_receive,
    webhook_signature_valid,
)

__all__ = [
    "DeliveryRun",
    "Outcome",
    "PayloadError",
    "SyncSummary",
    "ask_for_example_intent",
    "comment_fail",
    "comment_intent",
    "comment_post",
    "comment_post_run",
    "comment_retry",
    "comments_sweep",
    "deliveries_sweep",
    "delivery_claim",
    "delivery_id_error",
    "delivery_process",
    "delivery_reprocess",
    "delivery_run",
    "external_id_for",
    "item_mark_deleted",
    "item_upsert",
    "priorities_refresh",
    "priority_for",
    "release_report_plan",
    "report_release",
    "source_claim",
    "source_client",
    "source_create_or_update",
    "source_release",
    "source_set_options",
    "source_sync",
    "webhook_receive",
    "webhook_signature_valid",
]

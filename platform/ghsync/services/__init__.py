"""Every write of the GitHub intake (a package: sources, items, sync, webhooks, comments, priority).

Other apps call `report_release(release=..., dry_run=False)` after publishing a release.
"""

from ghsync.services.comments import (
    ask_for_example_intent,
    comment_intent,
    comment_post,
    release_report_plan,
    report_release,
)
from ghsync.services.items import Outcome, external_id_for, item_mark_deleted, item_upsert
from ghsync.services.priority import priorities_refresh, priority_for
from ghsync.services.sources import (
    source_claim,
    source_client,
    source_create_or_update,
    source_release,
    source_set_options,
)
from ghsync.services.sync import SyncSummary, source_sync
from ghsync.services.webhooks import delivery_claim, delivery_process, webhook_receive, webhook_signature_valid

__all__ = [
    "Outcome",
    "SyncSummary",
    "ask_for_example_intent",
    "comment_intent",
    "comment_post",
    "delivery_claim",
    "delivery_process",
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

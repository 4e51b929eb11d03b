"""Every read of the GitHub intake that a view, task or command needs."""

from dataclasses import dataclass

from django.db.models import QuerySet

from ghsync.models import (
    CommentKind,
    CommentStatus,
    DeliveryStatus,
    GithubItem,
    GithubSource,
    OutgoingComment,
    WebhookDelivery,
)
from ghsync.services.priority import PriorityWhy, priority_for, report_counts
from intake.models import CaseStatus


def source_ids_enabled() -> list[int]:
    return list(GithubSource.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True))


def source_get(*, source_id: int) -> GithubSource:
    return GithubSource.objects.get(pk=source_id)


def source_for_delivery(*, delivery_id: int) -> GithubSource | None:
    payload = WebhookDelivery.objects.values_list("payload", flat=True).get(pk=delivery_id)
    repository = payload.get("repository") if isinstance(payload, dict) else None
    full_name = repository.get("full_name") if isinstance(repository, dict) else None
    return GithubSource.objects.filter(repo__iexact=full_name).first() if isinstance(full_name, str) else None


def deliveries_failed(*, limit: int = 50) -> list[WebhookDelivery]:
    """The failed webhook deliveries, newest first, for maintainers to read and process again."""
    return list(WebhookDelivery.objects.filter(status=DeliveryStatus.FAILED).order_by("-received_at")[:limit])


def comments_failed(*, limit: int = 50) -> list[OutgoingComment]:
    """The GitHub posts that failed, newest first, for maintainers to try again."""
    return list(
        OutgoingComment.objects.filter(status=CommentStatus.FAILED)
        .select_related("source")
        .order_by("-created_at")[:limit]
    )


def sources_all() -> QuerySet[GithubSource]:
    return GithubSource.objects.order_by("repo")


def items_needing_example(*, source: GithubSource) -> list[GithubItem]:
    """Needs-info requests of the source that have not been asked for an example yet."""
    asked = OutgoingComment.objects.filter(kind=CommentKind.ASK_EXAMPLE, source=source).values_list("key", flat=True)
    asked_ids = {key.removeprefix("ask-example:") for key in asked}
    items = GithubItem.objects.filter(
        source=source, case__status=CaseStatus.NEEDS_INFO, deleted_at__isnull=True
    ).select_related("case", "source")
    return [item for item in items if item.external_id not in asked_ids]


@dataclass(frozen=True)
class RankedCase:
    item: GithubItem
    why: PriorityWhy


def cases_by_priority(*, status: str = "", limit: int = 200) -> list[RankedCase]:
    """GitHub cases, highest priority first, each with the reason for its priority."""
    items = GithubItem.objects.filter(case__isnull=False).select_related("case", "source")
    if status:
        items = items.filter(case__status=status)
    items = list(items.order_by("-case__priority", "-case__vote_count", "case_id")[:limit])
    reports = report_counts(logins={item.author_login for item in items})
    return [
        RankedCase(
            item,
            priority_for(
                reports=reports[item.author_login],
                platform_votes=item.case.vote_count,
                github_votes=item.plus_one,
                login=item.author_login,
            ),
        )
        for item in items
    ]

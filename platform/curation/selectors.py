"""Every read of dataset batches and versions that a view, task or another app needs."""

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse

from curation.models import BatchCase, BatchStatus, BenchmarkItem, BenchmarkSet, DatasetBatch, DatasetVersion
from curation.pipeline import EvalItem
from curation.pipeline import case_pk_for_row as case_pk_for_row  # the id scheme lives with the rows; re-exported
from intake.models import CaseStatus, FeedbackCase


def batch_queryset() -> QuerySet[DatasetBatch]:
    return DatasetBatch.objects.select_related("created_by", "approved_by", "dataset_version").order_by("-id")


def batch_get(*, batch_id: int) -> DatasetBatch | None:
    return batch_queryset().filter(pk=batch_id).first()


def batch_previous(*, batch: DatasetBatch) -> DatasetBatch | None:
    """The batch this one is compared with: the newest approved one before it, else the newest draft."""
    earlier = DatasetBatch.objects.filter(pk__lt=batch.pk).exclude(status=BatchStatus.DISCARDED).order_by("-pk")
    return earlier.filter(status=BatchStatus.APPROVED).first() or earlier.first()


def batch_latest_approved() -> DatasetBatch | None:
    return DatasetBatch.objects.filter(status=BatchStatus.APPROVED).order_by("-approved_at", "-pk").first()


def case_queryset_batchable(*, created_before: datetime | None = None) -> QuerySet[FeedbackCase]:
    """Accepted cases not yet in an approved batch, highest priority (then most voted) first.

    Approval moves a batch's cases to `in-batch`, so "accepted" is exactly "accepted
    since the last batch", including cases a discarded or earlier plan left out.
    """
    qs = FeedbackCase.objects.filter(status=CaseStatus.ACCEPTED)
    if created_before is not None:
        qs = qs.filter(created_at__lt=created_before)
    return qs.order_by("-priority", "-vote_count", "created_at", "id")


def batch_items(*, batch: DatasetBatch) -> QuerySet[BatchCase]:
    return BatchCase.objects.filter(batch=batch).select_related("case", "case__author").order_by("position", "id")


@dataclass(frozen=True)
class BatchReview:
    """What a maintainer reads before approving: the cases, their mix, and the change since last time."""

    items: list[BatchCase]
    by_scenario: list[tuple[str, int]]
    by_language: list[tuple[str, int]]
    previous: DatasetBatch | None
    added_ids: list[int]
    removed: list[FeedbackCase]
    not_accepted: list[FeedbackCase]


def batch_review(*, batch: DatasetBatch) -> BatchReview:
    items = list(batch_items(batch=batch))
    cases = [item.case for item in items]
    previous = batch_previous(batch=batch)
    current_ids = {case.pk for case in cases}
    previous_ids = set()
    if previous is not None:
        previous_ids = set(BatchCase.objects.filter(batch=previous).values_list("case_id", flat=True))
    removed = list(FeedbackCase.objects.filter(pk__in=previous_ids - current_ids).order_by("id"))
    # Only a draft can still go wrong: a case may have been withdrawn or rejected since it was added.
    not_accepted = [] if batch.status != BatchStatus.DRAFT else [c for c in cases if c.status != CaseStatus.ACCEPTED]
    return BatchReview(
        items=items,
        by_scenario=Counter(case.scenario for case in cases).most_common(),
        by_language=Counter(case.get_language_display() for case in cases).most_common(),
        previous=previous,
        added_ids=sorted(current_ids - previous_ids) if previous else [],
        removed=removed,
        not_accepted=not_accepted,
    )


def dataset_version_abspath(*, version: DatasetVersion) -> Path:
    """The dataset folder (a `datasets` DatasetDict saved to disk, plus manifest.json and README.md)."""
    if not version.path:
        raise ValueError(f"Dataset version {version.pk} has not been built yet.")
    return Path(settings.ARTIFACT_ROOT) / version.path


def case_url(*, case: FeedbackCase) -> str:
    """The public link to a case, as written into datasets and model cards."""
    return settings.SITE_URL + reverse("intake:case_detail", args=[case.pk])


def case_examples(*, case: FeedbackCase) -> list[tuple[str, str, str]]:
    """(row id, input, output) of each example pair of a case: `case-<pk>` first, then `case-<pk>-ex2`, ..."""
    first = (f"case-{case.pk}", case.prompt, case.expected_output)
    extras = [
        (f"case-{case.pk}-ex{number}", pair["input"], pair["output"])
        for number, pair in enumerate(case.extra_examples, start=2)
    ]
    return [first, *extras]


def dataset_rows_for_batch(*, batch: DatasetBatch) -> list[dict[str, Any]]:
    """The rows of the batch's dataset before curation, in batch order (priority first), in the Yuan
    fields the trainer reads plus provenance (`case_id`, `source_url`: the GitHub comment).

    One row per example pair of each case; the rows of one case share everything but id,
    prompt and response. A case its author withdrew is left out.
    """
    return [
        {
            "id": row_id,
            "prompt": prompt,
            "response": response,
            "source": item.case.source,
            "weight": float(item.weight),
            "scenario": item.case.scenario,
            "language": item.case.language,
            "license": item.case.data_license,
            "case_url": case_url(case=item.case),
            "case_id": item.case.pk,
            "source_url": item.case.source_url,
        }
        for item in batch_items(batch=batch).exclude(case__status=CaseStatus.WITHDRAWN)
        for row_id, prompt, response in case_examples(case=item.case)
    ]


def batch_case_ids(*, batch: DatasetBatch) -> list[int]:
    return list(BatchCase.objects.filter(batch=batch).values_list("case_id", flat=True))


def _general_items(path: Path) -> list[EvalItem]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                record = json.loads(line)
                items.append(EvalItem("general", str(record.get("id", number)), record["prompt"],
                                      record.get("response", "")))
    return items


def curation_eval_items() -> list[EvalItem]:
    """What a dataset build keeps out of train besides its own eval split: the general regression set
    (GENERAL_EVAL_PATH, what every evaluation scores) and every active registered benchmark."""
    items = _general_items(Path(settings.GENERAL_EVAL_PATH))
    benchmark_items = BenchmarkItem.objects.filter(benchmark__active=True).select_related("benchmark").order_by("id")
    items += [EvalItem(f"benchmark:{item.benchmark.name}", item.item_id, item.prompt, item.answer)
              for item in benchmark_items.iterator(chunk_size=2000)]
    return items


def benchmark_queryset() -> QuerySet[BenchmarkSet]:
    return BenchmarkSet.objects.select_related("created_by").order_by("name")

"""Dataset batches (a month's training plan) and the immutable dataset versions built from them.

Statuses change only through `curation.services`: `batch_transition` and
`dataset_version_transition`.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from intake.models import FeedbackCase


class BatchStatus(models.TextChoices):
    DRAFT = "draft", "draft"
    APPROVED = "approved", "approved"
    DISCARDED = "discarded", "discarded"


class DatasetBatch(models.Model):
    """A training plan: a reviewed set of accepted cases. Approval is final."""

    name = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=10, choices=BatchStatus.choices, default=BatchStatus.DRAFT)
    # The window of requests it collects (the plan collects the previous month on the 6th).
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)
    cases = models.ManyToManyField(FeedbackCase, through="BatchCase", related_name="batches")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("approve_datasetbatch", "Can approve dataset batches")]

    def __str__(self) -> str:
        return self.name


class BatchCase(models.Model):
    batch = models.ForeignKey(DatasetBatch, on_delete=models.CASCADE, related_name="items")
    case = models.ForeignKey(FeedbackCase, on_delete=models.PROTECT, related_name="batch_items")
    # Training weight of the case (the trainer's `weight` field); priority picks order.
    weight = models.FloatField(default=1.0)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "case"], name="batchcase_once_per_batch")]
        ordering = ["position", "id"]


class DatasetVersionStatus(models.TextChoices):
    PENDING = "pending", "pending"
    BUILDING = "building", "building"
    READY = "ready", "ready"
    FAILED = "failed", "failed"


class DatasetVersion(models.Model):
    """The files built from an approved batch: HF dataset on disk, manifest, card."""

    batch = models.OneToOneField(DatasetBatch, on_delete=models.PROTECT, related_name="dataset_version")
    status = models.CharField(max_length=10, choices=DatasetVersionStatus.choices, default=DatasetVersionStatus.PENDING)
    # Relative to settings.ARTIFACT_ROOT, so the artifact volume can move.
    path = models.CharField(max_length=500, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    train_rows = models.PositiveIntegerField(default=0)
    eval_rows = models.PositiveIntegerField(default=0)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # Build attempts; each claim takes the next, and only the newest may record anything.
    attempt = models.PositiveIntegerField(default=0)
    # When the build in hand was claimed: a `building` version older than
    # DATASET_BUILD_TIMEOUT_SECONDS lost its worker (the sweeper queues it again).
    claimed_at = models.DateTimeField(null=True, blank=True)
    # When its build message was last sent: a `pending` version older than
    # JOB_REQUEUE_SECONDS lost its message (broker down or restarted) and is enqueued again.
    enqueued_at = models.DateTimeField(default=timezone.now)
    # Where a build in hand is ({"stage", "done", "total"}), written with its heartbeat; kept once ready.
    progress = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    built_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"dataset of {self.batch}"


class BenchmarkSet(models.Model):
    """An evaluation set registered with the platform (a JSONL of prompts and answers).

    Every dataset build drops the train rows that overlap an active set (`curation.decontam`),
    so that the set keeps measuring what a model learned rather than what it saw.
    """

    name = models.SlugField(max_length=60, unique=True)
    description = models.CharField(max_length=300, blank=True)
    # sha256 of the uploaded file: registering the same file twice is a no-op.
    sha256 = models.CharField(max_length=64)
    item_count = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)
    # None: registered at the shell (`manage.py register_benchmark`).
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class BenchmarkItem(models.Model):
    benchmark = models.ForeignKey(BenchmarkSet, on_delete=models.CASCADE, related_name="items")
    item_id = models.CharField(max_length=200)
    prompt = models.TextField()
    answer = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["benchmark", "item_id"], name="benchmarkitem_unique_id")]

    def __str__(self) -> str:
        return f"{self.benchmark_id}:{self.item_id}"

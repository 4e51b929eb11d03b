"""Training runs on GPU workers and their evaluations.

The platform never imports `trainer/`: a run talks to it through its run folder
(see docs/ARCHITECTURE.md). Statuses change only through `training.services`.
"""

from pathlib import PurePath

from django.conf import settings
from django.db import models
from django.utils import timezone

from curation.models import DatasetVersion


class RunMethod(models.TextChoices):
    LORA = "lora", "LoRA"
    FULL = "full", "full fine-tune"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLING = "cancelling", "cancelling"
    CANCELLED = "cancelled", "cancelled"


ACTIVE_RUN_STATUSES = [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLING]


class TrainingRun(models.Model):
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="runs")
    base_checkpoint = models.CharField(max_length=500, help_text="A local HF Yuan2 folder, or the bundled demo model.")
    method = models.CharField(max_length=10, choices=RunMethod.choices, default=RunMethod.LORA)
    recipe = models.JSONField(default=dict, help_text="Validated hyper-parameters, written to the run folder.")
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # Relative to settings.ARTIFACT_ROOT.
    run_dir = models.CharField(max_length=500, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(default=0)
    last_loss = models.FloatField(null=True, blank=True)
    eta_seconds = models.PositiveIntegerField(null=True, blank=True)
    resume_from = models.CharField(max_length=500, blank=True)
    log_tail = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    worker_hostname = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # When its train message was last sent: a `queued` run older than JOB_REQUEUE_SECONDS
    # lost its message (broker down or restarted) and the sweeper enqueues it again.
    enqueued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One dataset version (so one batch) cannot get two concurrent runs by accident.
            models.UniqueConstraint(
                fields=["dataset_version"],
                condition=models.Q(status__in=ACTIVE_RUN_STATUSES),
                name="trainingrun_one_active_per_dataset",
            )
        ]

    @property
    def base_name(self) -> str:
        """The base as visitors may see it: the checkpoint folder's name, never the server path to it."""
        return PurePath(self.base_checkpoint).name or self.base_checkpoint

    def __str__(self) -> str:
        return f"run {self.pk} on {self.dataset_version}"


class EvaluationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    PASSED = "passed", "passed"
    BLOCKED = "blocked", "blocked"
    OVERRIDDEN = "overridden", "overridden"
    FAILED = "failed", "failed"


class Evaluation(models.Model):
    """Base vs fine-tuned scores on the eval split and the general regression set."""

    run = models.OneToOneField(TrainingRun, on_delete=models.CASCADE, related_name="evaluation")
    status = models.CharField(max_length=12, choices=EvaluationStatus.choices, default=EvaluationStatus.PENDING)
    base_metrics = models.JSONField(default=dict, blank=True)
    tuned_metrics = models.JSONField(default=dict, blank=True)
    per_case = models.JSONField(default=list, blank=True)
    # Why it passed or is blocked, one reason a line (shown on the run page).
    verdict = models.TextField(blank=True)
    attempt = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    override_reason = models.TextField(blank=True)
    override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # As for runs: a `pending` evaluation older than JOB_REQUEUE_SECONDS is enqueued again.
    enqueued_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("override_evaluation", "Can publish despite a blocking evaluation")]

    def __str__(self) -> str:
        return f"evaluation of {self.run}"

"""Published checkpoints. Statuses change only through `releases.services`."""

from django.conf import settings
from django.db import models

from training.models import TrainingRun


class ReleaseStatus(models.TextChoices):
    PUBLISHING = "publishing", "publishing"
    PUBLISHED = "published", "published"
    FAILED = "failed", "failed"
    WITHDRAWN = "withdrawn", "withdrawn"


class Release(models.Model):
    tag = models.SlugField(max_length=80, unique=True)
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="release")
    status = models.CharField(max_length=12, choices=ReleaseStatus.choices, default=ReleaseStatus.PUBLISHING)
    # Relative to settings.ARTIFACT_ROOT.
    path = models.CharField(max_length=500, blank=True)
    model_card = models.TextField(blank=True)
    sha256sums = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    # Who asked for the publish in hand: the sweeper hands it to the attempt it queues again.
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    # While `publishing`: set at the claim, then by the copy as it goes. Older than
    # RELEASE_PUBLISH_TIMEOUT_SECONDS means the copy died (releases.tasks.sweep_stale_publishing).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Copies started for the publish in hand; each takes the release over from the one before.
    publish_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("publish_release", "Can publish releases")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.tag


class ReleaseFile(models.Model):
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=300)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    download_count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["release", "name"], name="releasefile_unique_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.release.tag}/{self.name}"

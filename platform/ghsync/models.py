"""GitHub as an intake channel: configured sources, what was read from them, what was posted back.

A `GithubItem` is one issue or one tracking-issue comment as last read from GitHub
(raw text, parsed example pairs, 👍 count); the `FeedbackCase` made from it lives in
intake and is written only through `intake.services`. Posts to GitHub are recorded
as `OutgoingComment` intents before they are made, so that a retry or a crash never
posts twice. Every write here goes through `ghsync.services`.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from intake.models import FeedbackCase


class GithubSource(models.Model):
    """One repository maintainers read requests from (github.com or a GitHub Enterprise server)."""

    repo = models.CharField("repository (owner/name)", max_length=140)
    api_url = models.URLField(
        "API base URL",
        max_length=300,
        blank=True,
        help_text="GitHub Enterprise: https://github.example.com/api/v3. Empty: the GITHUB_API_URL setting.",
    )
    intake_labels = models.JSONField(
        default=list, blank=True, help_text='Issues with any of these labels are requests, e.g. ["co-training"].'
    )
    tracking_issues = models.JSONField(
        default=list, blank=True, help_text="Issue numbers whose comments are requests (the pinned 共训计划 issue)."
    )
    maintainers = models.JSONField(
        default=list,
        blank=True,
        help_text="Logins whose tracking-issue posts are never requests, besides OWNER/MEMBER/COLLABORATOR.",
    )
    token_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of the environment variable holding this source's token; empty: GITHUB_TOKEN. "
        "Tokens never live in the database.",
    )
    enabled = models.BooleanField(default=True, help_text="Synced by the periodic task.")
    # The three switches that make the platform write to GitHub are off until a maintainer turns them on.
    ask_for_examples = models.BooleanField(
        default=False, help_text="Post one comment asking for an example on requests that have none."
    )
    report_back = models.BooleanField(
        default=False, help_text="Comment on the originating issues when a release includes their requests."
    )
    released_label = models.CharField(
        max_length=50, default="co-training: released", help_text="Label added when reporting back."
    )
    contributions_licensed = models.BooleanField(
        default=True,
        help_text="The repository's co-training rules say requests posted there are shared under the data "
        "license (CC-BY-4.0). An issue form's consent checkbox still decides for its issue.",
    )
    # stream ("issues:<label>", "comments:<number>") -> ISO time of the newest update read;
    # the next sync asks GitHub `since` then. "full" -> when the last full pass started.
    cursors = models.JSONField(default=dict, blank=True, editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_sync_summary = models.JSONField(default=dict, blank=True, editable=False)
    # A sync claims its source until this time, so two workers never sync one source at
    # once; a crashed sync's lease runs out.
    sync_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_url", "repo"], name="githubsource_unique_repo")]
        ordering = ["repo"]

    def __str__(self) -> str:
        return self.repo


class ItemKind(models.TextChoices):
    ISSUE = "issue", "intake issue"
    COMMENT = "comment", "tracking-issue comment"


class ItemState(models.TextChoices):
    CASE = "case", "became a case"
    SKIPPED = "skipped", "not a request"
    DELETED = "deleted", "deleted on GitHub"


class GithubItem(models.Model):
    """One issue or tracking-issue comment as last read from GitHub, and the case made from it."""

    source = models.ForeignKey(GithubSource, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=10, choices=ItemKind.choices)
    # `owner/name#12` or `owner/name#12/comment-345` (host-prefixed on GitHub Enterprise); also the case's external_id.
    external_id = models.CharField(max_length=100, unique=True)
    github_id = models.BigIntegerField()
    issue_number = models.PositiveIntegerField()
    # Empty when GitHub's link was not an http(s) URL on the source's server (see `ghsync.sanitize`).
    html_url = models.URLField(max_length=500, blank=True)
    title = models.CharField(max_length=300, blank=True)
    author_login = models.CharField(max_length=100, db_index=True)
    author_association = models.CharField(max_length=30, blank=True)
    body = models.TextField(blank=True)
    # Scenario, example pairs ({input, output, bad_output}), notes, language... as `ghsync.parsing` read them.
    parsed = models.JSONField(default=dict, blank=True)
    plus_one = models.PositiveIntegerField(default=0, help_text="👍 reactions on GitHub; they count as votes.")
    # What was changed to store the latest version: control characters removed, fields cut, ...
    cleaning = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=10, choices=ItemState.choices)
    skip_reason = models.CharField(max_length=200, blank=True)
    case = models.OneToOneField(
        FeedbackCase, null=True, blank=True, on_delete=models.SET_NULL, related_name="github_item"
    )
    github_created_at = models.DateTimeField()
    # GitHub's updated_at of the version stored: an older version (a late webhook, a stale
    # page) never overwrites a newer one.
    github_updated_at = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["source", "kind", "issue_number"], name="githubitem_issue")]

    def __str__(self) -> str:
        return self.external_id


class DeliveryStatus(models.TextChoices):
    RECEIVED = "received", "received"
    PROCESSING = "processing", "processing"
    PROCESSED = "processed", "processed"
    FAILED = "failed", "failed"


# GitHub's delivery ids are UUIDs; longer ids are refused (400), never cut: two ids
# with a common prefix are two deliveries.
DELIVERY_ID_MAX = 255


class WebhookDelivery(models.Model):
    """A verified webhook delivery, stored before it is processed (its id makes redeliveries no-ops).

    Every delivery ends `processed` (`result` says what it did, or why it was ignored)
    or `failed` (`error` says why); `ghsync.services.webhooks` holds the moves between.
    """

    delivery_id = models.CharField(max_length=DELIVERY_ID_MAX, unique=True)
    event = models.CharField(max_length=50)
    action = models.CharField(max_length=50, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=12, choices=DeliveryStatus.choices, default=DeliveryStatus.RECEIVED)
    result = models.CharField(max_length=300, blank=True)
    error = models.TextField(blank=True)
    # Claims so far; the retry limit counts them (a redelivery or "process again" starts over).
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    # When the latest message for it was sent, or is due (a retry waiting out its back-off):
    # a `received` delivery whose message is overdue was lost and is sent again by the sweeper.
    queued_at = models.DateTimeField(default=timezone.now)
    # When the current attempt claimed it: a `processing` claim much older than this died with its worker.
    claimed_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "queued_at"], name="webhookdelivery_due")]

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}"


class CommentKind(models.TextChoices):
    ASK_EXAMPLE = "ask-example", "ask for an example"
    RELEASE_REPORT = "release-report", "release report"


class CommentStatus(models.TextChoices):
    PENDING = "pending", "pending"
    POSTED = "posted", "posted"
    FAILED = "failed", "failed"


class OutgoingComment(models.Model):
    """A comment the platform means to post (or has posted) on GitHub: the intent comes first.

    `key` names what the comment is for, so asking twice finds the same row; the body
    carries a hidden `<!-- cotrain:KEY -->` marker so that after a crash between
    posting and recording, the next attempt finds the comment on GitHub instead of
    posting it again.
    """

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=CommentKind.choices)
    source = models.ForeignKey(GithubSource, on_delete=models.CASCADE, related_name="outgoing_comments")
    issue_number = models.PositiveIntegerField()
    body = models.TextField()
    labels = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=CommentStatus.choices, default=CommentStatus.PENDING)
    cases = models.ManyToManyField(FeedbackCase, blank=True, related_name="github_comments")
    release = models.ForeignKey("releases.Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    github_comment_id = models.BigIntegerField(null=True, blank=True)
    html_url = models.URLField(max_length=500, blank=True)
    # Each attempt is counted (and the row claimed) before the POST: an attempt after the
    # first looks for the marker on GitHub before posting. A claim older than
    # GITHUB_POST_TIMEOUT_SECONDS belongs to a worker that died; none while no attempt holds it.
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # When the latest message to post it was sent, or is due (a retry's back-off): a pending
    # comment whose message is overdue was lost and is sent again by the sweeper.
    queued_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return self.key

import uuid

from django.conf import settings
from django.core.validators import MaxLengthValidator
from django.db import models

from intake.validators import (
    ExamplePairsValidator,
    validate_clean_text,
    validate_http_url,
    validate_not_blank,
    validate_tags,
)

# Size limits: generous for real prompts (long prose, several examples) yet small
# enough that one case cannot fill the database or a training batch.
SCENARIO_MAX = 200
TEXT_MAX = 20_000
MODEL_VERSION_MAX = 100
REASON_MAX = 2_000
IDEMPOTENCY_KEY_MAX = 100
# Example pairs besides the first (prompt/expected_output) that one request may carry.
EXTRA_EXAMPLES_MAX = 50
DATA_LICENSE = "CC-BY-4.0"


class CaseSource(models.TextChoices):
    WEB = "web", "web form"
    API = "api", "API"
    GITHUB = "github", "GitHub"


class CaseLanguage(models.TextChoices):
    ZH = "zh", "Chinese 中文"
    EN = "en", "English"
    MIXED = "mixed", "mixed 中英混合"
    OTHER = "other", "other"


class CaseStatus(models.TextChoices):
    NEW = "new", "new"
    ACCEPTED = "accepted", "accepted"
    REJECTED = "rejected", "rejected"
    DUPLICATE = "duplicate", "duplicate"
    NEEDS_INFO = "needs-info", "needs info"
    IN_BATCH = "in-batch", "in batch"
    TRAINED = "trained", "trained"
    RELEASED = "released", "released"
    WITHDRAWN = "withdrawn", "withdrawn"


class FeedbackCase(models.Model):
    """One failure case or request: what was asked, what Yuan said, what it should say.

    `status` changes only through `intake.services.case_transition`, which also
    writes the `CaseEvent` audit trail.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(max_length=10, choices=CaseSource.choices, default=CaseSource.WEB)
    source_url = models.URLField(
        max_length=500,
        blank=True,
        validators=[validate_http_url],
        help_text="Link to the original report, e.g. a GitHub comment.",
    )
    # The id of the original in its source (a GitHub comment id), so re-ingesting it is a no-op.
    external_id = models.CharField(max_length=100, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    author_name = models.CharField(
        max_length=150, blank=True, help_text="Author's name at the source when not a local user."
    )

    scenario = models.CharField(
        "scenario (场景需求)", max_length=SCENARIO_MAX, validators=[validate_not_blank, validate_clean_text]
    )
    prompt = models.TextField(
        "input (输入)",
        max_length=TEXT_MAX,
        validators=[MaxLengthValidator(TEXT_MAX), validate_not_blank, validate_clean_text],
    )
    bad_output = models.TextField(
        "model's bad output",
        max_length=TEXT_MAX,
        blank=True,
        validators=[MaxLengthValidator(TEXT_MAX), validate_clean_text],
    )
    expected_output = models.TextField(
        "expected output (输出)",
        max_length=TEXT_MAX,
        validators=[MaxLengthValidator(TEXT_MAX), validate_not_blank, validate_clean_text],
    )
    # The request's further input/output pairs ({"input", "output"}), in order; each
    # becomes its own dataset row next to the first pair (prompt -> expected_output).
    extra_examples = models.JSONField(
        "additional examples",
        default=list,
        # Also a database default: rows written without the column (older code mid-deploy, bulk SQL) get [].
        db_default=[],
        blank=True,
        validators=[ExamplePairsValidator(max_items=EXTRA_EXAMPLES_MAX, max_length=TEXT_MAX)],
    )
    language = models.CharField(max_length=10, choices=CaseLanguage.choices, default=CaseLanguage.ZH)
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    model_version = models.CharField(max_length=MODEL_VERSION_MAX, blank=True, validators=[validate_clean_text])
    # The kinds of personal data found in its text (`intake.pii`: "PHONE", "ID", ...), kept in sync by the
    # services: triage sees the flag, public pages show the values masked, dataset versions scrub them.
    personal_data = models.JSONField(default=list, db_default=[], blank=True)
    # MinHash signature of its prompt and expected output (`intake.neardup`), written by the services with
    # one `CaseBand` row per LSH band: triage finds a new case's likely duplicates by a band lookup.
    signature = models.BinaryField(default=b"", db_default=b"", blank=True, editable=False)
    license_consent = models.BooleanField(default=False)
    data_license = models.CharField(max_length=40, default=DATA_LICENSE)

    status = models.CharField(max_length=12, choices=CaseStatus.choices, default=CaseStatus.NEW)
    status_reason = models.TextField(blank=True, max_length=REASON_MAX, validators=[MaxLengthValidator(REASON_MAX)])
    status_changed_at = models.DateTimeField(null=True, blank=True)
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="duplicates"
    )
    # Higher first when a batch is built (the plan favours people who report more problems).
    priority = models.SmallIntegerField(default=0)
    vote_count = models.PositiveIntegerField(default=0)
    # Lower-cased scenario, input and outputs, written by the services; on PostgreSQL a
    # trigram index (migration 0002) serves the triage text search from it.
    search_text = models.TextField(blank=True, editable=False)
    # The client's Idempotency-Key (API header, or the web form's hidden field): a retry of a
    # submission whose answer was lost gets this case back instead of creating a second one.
    idempotency_key = models.CharField(max_length=IDEMPOTENCY_KEY_MAX, null=True, blank=True, editable=False)

    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # The triage list pages by id (keyset) under any one filter; each index below
        # serves one filter so that a page is an index range scan even at 100,000 cases.
        indexes = [
            models.Index(fields=["status", "-id"], name="case_status_id"),
            models.Index(fields=["source", "-id"], name="case_source_id"),
            models.Index(fields=["language", "-id"], name="case_language_id"),
            models.Index(fields=["scenario", "-id"], name="case_scenario_id"),
            models.Index(fields=["author", "-id"], name="case_author_id"),
            models.Index(fields=["status", "-vote_count", "-id"], name="case_status_votes"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], condition=~models.Q(external_id=""), name="case_unique_external_id"
            ),
            models.CheckConstraint(condition=~models.Q(expected_output=""), name="case_expected_output_not_empty"),
            models.UniqueConstraint(
                fields=["author", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="case_unique_idempotency_key",
            ),
        ]
        permissions = [("triage_feedbackcase", "Can triage feedback cases")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.scenario[:60]}"


class CaseBand(models.Model):
    """One LSH band key of a case's signature: cases sharing a key are candidate near-duplicates."""

    case = models.ForeignKey(FeedbackCase, on_delete=models.CASCADE, related_name="bands")
    key = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["key"], name="caseband_key")]
        constraints = [models.UniqueConstraint(fields=["case", "key"], name="caseband_once_per_case")]

    def __str__(self) -> str:
        return f"band {self.key} of {self.case_id}"


class CaseEvent(models.Model):
    """Audit trail: who changed what on a case, and when. Rows are only ever added."""

    case = models.ForeignKey(FeedbackCase, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=30)
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    note = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["case", "id"], name="caseevent_case_id")]

    def __str__(self) -> str:
        return f"{self.action} on case {self.case_id}"


class CaseVote(models.Model):
    """A person's +1 on an accepted request; `FeedbackCase.vote_count` mirrors the rows."""

    case = models.ForeignKey(FeedbackCase, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="case_votes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "user"], name="casevote_one_per_user")]

    def __str__(self) -> str:
        return f"vote of {self.user_id} on {self.case_id}"

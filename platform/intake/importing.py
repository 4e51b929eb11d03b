"""Reading `export_cases` lines back: parse and check every line before writing any.

The import is all-or-nothing: `cases_import_records` validates every record first,
reports each bad one by its line number, and only then creates the new cases in
one transaction. Cases already present (same uid, or same source and external id)
are skipped, so importing a file twice changes nothing.
"""

import uuid
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.models import User
from intake.models import CaseLanguage, CaseSource, CaseStatus, FeedbackCase
from intake.services import CaseImport, CaseInput, case_import

# Records without a uid (written by hand or by another tool) get one derived from
# their content, so that importing them twice is still a no-op.
UID_NAMESPACE = uuid.UUID("6f1c1a3e-2d0b-4c55-9a57-8f8c4f1d2b10")
REQUIRED = ("source", "status", "scenario", "prompt", "expected_output", "language", "created_at")
TEXT_FIELDS = (
    "source", "source_url", "external_id", "status", "scenario", "prompt", "bad_output", "expected_output",
    "language", "model_version", "author", "created_at", "uid", "status_reason",
)  # fmt: skip


class CaseImportError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class ImportResult:
    created: int
    skipped: int


def _check_types(record: dict[str, object]) -> None:
    if not isinstance(record, dict):
        raise ValidationError("Each line must be a JSON object.")
    missing = [name for name in REQUIRED if name not in record]
    if missing:
        raise ValidationError(f"Missing field(s): {', '.join(missing)}.")
    for name in TEXT_FIELDS:
        if name in record and not isinstance(record[name], str):
            raise ValidationError(f"Field {name!r} must be a string.")
    tags = record.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValidationError("Field 'tags' must be a list of strings.")
    extras = record.get("extra_examples", [])
    if not isinstance(extras, list) or not all(
        isinstance(e, dict) and isinstance(e.get("input"), str) and isinstance(e.get("output"), str) for e in extras
    ):
        raise ValidationError("Field 'extra_examples' must be a list of {\"input\": str, \"output\": str} objects.")
    if not isinstance(record.get("license_consent", True), bool):
        raise ValidationError("Field 'license_consent' must be true or false.")
    for name, choices in (("source", CaseSource), ("status", CaseStatus), ("language", CaseLanguage)):
        if record[name] not in choices.values:
            raise ValidationError(f"Field {name!r} must be one of {', '.join(choices.values)}; got {record[name]!r}.")


def _parse_record(*, record: dict[str, object]) -> CaseImport:
    _check_types(record)
    try:
        created_at = parse_datetime(str(record["created_at"]))
    except ValueError:
        # Well-formed but impossible (month 13, February 30th, hour 25): parse_datetime raises, not returns None.
        created_at = None
    if created_at is None:
        raise ValidationError(f"Field 'created_at' is not an ISO 8601 date-time: {record['created_at']!r}.")
    if timezone.is_naive(created_at):
        created_at = timezone.make_aware(created_at, timezone.get_current_timezone())
    data = CaseInput(
        scenario=str(record["scenario"]),
        prompt=str(record["prompt"]),
        bad_output=str(record.get("bad_output", "")),
        expected_output=str(record["expected_output"]),
        language=str(record["language"]),
        tags=tuple(record.get("tags", [])),  # type: ignore[arg-type]
        model_version=str(record.get("model_version", "")),
        license_consent=bool(record.get("license_consent", True)),
        extra_examples=tuple((e["input"], e["output"]) for e in record.get("extra_examples", [])),  # type: ignore[union-attr]
    )
    content_key = "\x1f".join([str(record["source"]), str(record.get("source_url", "")), data.scenario, data.prompt])
    uid = str(record.get("uid") or uuid.uuid5(UID_NAMESPACE, content_key))
    try:
        uuid.UUID(uid)
    except ValueError as exc:
        raise ValidationError(f"Field 'uid' is not a UUID: {uid!r}.") from exc
    parsed = CaseImport(
        uid=uid,
        data=data,
        source=str(record["source"]),
        source_url=str(record.get("source_url", "")),
        external_id=str(record.get("external_id", "")),
        status=str(record["status"]),
        status_reason=str(record.get("status_reason", "")),
        author_name=str(record.get("author", "")),
        created_at=created_at,
    )
    _validate_content(parsed)
    return parsed


def _validate_content(parsed: CaseImport) -> None:
    """Run the model's own validators on an unsaved case, so import accepts what the form accepts."""
    if not parsed.data.license_consent:
        raise ValidationError("The case has no consent to the data license (license_consent is false).")
    case = parsed.new_case()
    case.full_clean(exclude=["author", "duplicate_of", "uid"], validate_unique=False, validate_constraints=False)


def _format_error(line: int, exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        details = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    else:
        details = " ".join(exc.messages)
    return f"line {line}: {details}"


def records_parse(*, records: list[tuple[int, object]]) -> list[CaseImport]:
    """Parse every record; raise CaseImportError listing every bad line, or return them all."""
    parsed, errors = [], []
    for line, record in records:
        try:
            parsed.append(_parse_record(record=record))  # type: ignore[arg-type]
        except ValidationError as exc:
            errors.append(_format_error(line, exc))
    if errors:
        raise CaseImportError(errors)
    return parsed


def _already_have(parsed: CaseImport) -> bool:
    if FeedbackCase.objects.filter(uid=parsed.uid).exists():
        return True
    return (
        bool(parsed.external_id)
        and FeedbackCase.objects.filter(source=parsed.source, external_id=parsed.external_id).exists()
    )


@transaction.atomic
def cases_import_records(*, records: list[tuple[int, object]]) -> ImportResult:
    parsed_records = records_parse(records=records)
    authors = {
        user.username: user for user in User.objects.filter(username__in={p.author_name for p in parsed_records})
    }
    created = skipped = 0
    seen: set[str] = set()
    for parsed in parsed_records:
        if parsed.uid in seen or _already_have(parsed):
            skipped += 1
            continue
        seen.add(parsed.uid)
        case_import(record=parsed, author=authors.get(parsed.author_name))
        created += 1
    return ImportResult(created=created, skipped=skipped)

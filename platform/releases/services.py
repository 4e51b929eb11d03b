"""Writes to releases; the only place their status changes.

Publishing puts a run's export into `ARTIFACT_ROOT/releases/<tag>/` in three
steps: claim (a `publishing` row, under the permission and evaluation checks),
copy (outside any transaction: checkpoints are large; each file a hard link to the
run's when both are on one filesystem, else a copy, and every byte hashed against the
export's SHA256SUMS either way), install (under the row
lock: move the staged folder into place, record the files, publish, and move the
batch's cases to `released`). A failure marks the release `failed`; publishing
the run again retries it.

A copy killed mid-way (worker lost, OOM, deploy) raises nothing, so nothing marks
the release failed. Each copy therefore claims the release (attempt N, a
heartbeat) and keeps the heartbeat fresh while it copies; the beat sweeper
(`release_on_stale`, through `cotrain_site.jobs.job_sweep`) queues a silent one again, and fails it with the reason
after RELEASE_PUBLISH_MAX_ATTEMPTS. A newer attempt takes the release over: an
older copy that wakes up finds its attempt gone and stops without installing.
"""

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import yaml
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from trainer import contract

from accounts.models import User
from accounts.selectors import user_is_maintainer
from cotrain_site.jobs import ClaimLost, Heartbeat, Job, job_claim, job_lock, job_send, keep_newest
from cotrain_site.transitions import transition
from curation.models import DatasetBatch
from curation.selectors import case_url
from intake.models import CaseStatus
from intake.services import case_transition
from releases.models import Release, ReleaseFile, ReleaseStatus
from releases.selectors import release_cases
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun
from training.services import evaluation_override

PUBLISH_PERMISSION = "releases.publish_release"
OVERRIDE_PERMISSION = "training.override_evaluation"
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
SUMS = "SHA256SUMS"
CARD = "README.md"
EXPORTS = (contract.EXPORT_MERGED, contract.EXPORT_ADAPTER)
HF_LANGUAGES = {"zh": ["zh"], "en": ["en"], "mixed": ["zh", "en"]}
PUBLISHABLE = {EvaluationStatus.PASSED, EvaluationStatus.OVERRIDDEN}

NOTES_CHARS = 5000
# A release stays `publishing` while it is copied: attempt 0 waits for its message, attempt N copies. The newest
# message always takes over (an older copy finds its attempt gone); the heartbeat doubles as the time it was sent.
PUBLISH_JOB = Job(Release, "releases.tasks.publish_release",
                  waiting=Q(status=ReleaseStatus.PUBLISHING, publish_attempts=0),
                  working=Q(status=ReleaseStatus.PUBLISHING, publish_attempts__gt=0),
                  timeout_setting="RELEASE_PUBLISH_TIMEOUT_SECONDS", attempt_field="publish_attempts",
                  sent_field="heartbeat_at", also_claimable=Q(status=ReleaseStatus.PUBLISHING),
                  args=lambda release: (release.pk, release.requested_by_id))
RELEASE_TRANSITIONS = {
    (ReleaseStatus.PUBLISHING, ReleaseStatus.PUBLISHED),
    (ReleaseStatus.PUBLISHING, ReleaseStatus.FAILED),
    (ReleaseStatus.FAILED, ReleaseStatus.PUBLISHING),
    (ReleaseStatus.PUBLISHED, ReleaseStatus.WITHDRAWN),
}


def release_transition(*, release: Release, to_status: str, actor: User | None) -> Release:
    published = {"published_by": actor, "published_at": timezone.now()} if to_status == ReleaseStatus.PUBLISHED else {}
    return transition(Release, pk=release.pk, to_status=to_status, allowed=RELEASE_TRANSITIONS,
                      label="Release {row.tag}", changes=lambda locked: published)


def _batch_of(run: TrainingRun) -> DatasetBatch:
    return DatasetBatch.objects.get(dataset_version__runs=run)


def _default_tag(run: TrainingRun) -> str:
    return slugify(f"{_batch_of(run).name}-run-{run.pk}")[:80]


def _evaluation_gate(*, run: TrainingRun, by: User, override_reason: str) -> str:
    """Refuse unless the evaluation passed or the publisher overrides it; returns the note for the release."""
    evaluation = Evaluation.objects.filter(run=run).first()
    status = evaluation.status if evaluation else "missing"
    if status in PUBLISHABLE:
        return f"Evaluation {status}." if status == EvaluationStatus.PASSED else (
            f"Evaluation overridden by {evaluation.override_by}: {evaluation.override_reason}"
        )
    if not override_reason.strip():
        raise ValidationError(
            f"Publishing is blocked: the run's evaluation is {status}. A maintainer may override it with a reason.",
            code="evaluation_blocks",
        )
    if not by.has_perm(OVERRIDE_PERMISSION):
        raise PermissionDenied("Only maintainers with the override permission can publish despite the evaluation.")
    if evaluation is not None and status == EvaluationStatus.BLOCKED:
        # The evaluation records the override too (reason length checked there); the run page shows it.
        evaluation_override(evaluation=evaluation, by=by, reason=override_reason)
    return f"Published by {by.username} although the evaluation was {status}: {override_reason.strip()}"


@transaction.atomic
def _release_claim(*, run: TrainingRun, by: User, tag: str | None, override_reason: str) -> Release:
    if by is None or not by.is_active or not by.has_perm(PUBLISH_PERMISSION):
        raise PermissionDenied("Only maintainers can publish releases.")
    run = TrainingRun.objects.get(pk=run.pk)
    if run.status != RunStatus.SUCCEEDED:
        raise ValidationError(f"Run {run.pk} is {run.status}; only a succeeded run can be released.", code="run")
    tag = (tag or "").strip() or _default_tag(run)
    if not TAG_RE.match(tag):
        raise ValidationError("A tag is letters, digits, '_' and '-' (at most 80).", code="bad_tag")
    existing = Release.objects.select_for_update().filter(run=run).first()
    if existing is not None and existing.status != ReleaseStatus.FAILED:
        raise ValidationError(f"Run {run.pk} is already released as {existing.tag} ({existing.status}).", code="dup")
    if Release.objects.filter(tag=tag).exclude(run=run).exists():
        raise ValidationError(f"The tag {tag} is taken.", code="tag_taken")
    notes = _evaluation_gate(run=run, by=by, override_reason=override_reason)
    if existing is not None:
        # A new publish of a failed release: its attempts count from zero again.
        existing.tag, existing.notes, existing.requested_by = tag, notes, by
        existing.heartbeat_at, existing.publish_attempts = timezone.now(), 0
        existing.save(update_fields=["tag", "notes", "requested_by", "heartbeat_at", "publish_attempts"])
        return release_transition(release=existing, to_status=ReleaseStatus.PUBLISHING, actor=by)
    try:
        with transaction.atomic():
            return Release.objects.create(tag=tag, run=run, notes=notes, requested_by=by, heartbeat_at=timezone.now())
    except IntegrityError as exc:  # a concurrent publish of this run, or of this tag, came first
        raise ValidationError(f"Run {run.pk} or tag {tag} was just released by someone else.", code="dup") from exc


@dataclass(frozen=True)
class _Staged:
    folder: Path
    files: dict[str, tuple[int, str]]  # relative name -> (size, sha256)
    card: str
    sums: str


def _copy_hashed(src: Path, dst: Path, *, beat: Callable[[], None]) -> tuple[int, str]:
    """Share `src` as `dst` and hash what `dst` holds, in 1 MiB chunks: one read of each byte.

    A hard link (`COTRAIN_RELEASE_LINK_FILES`, on by default) when the run folder and the
    release store are on one filesystem: no gigabytes copied, and the release keeps its
    bytes when the run folder is deleted. A re-export replaces the run's files rather than
    writing into them (`trainer.export` removes the old folders first). Where a link is
    refused (another filesystem, a store without hard links), or the setting is off, a copy.
    """
    digest, size = hashlib.sha256(), 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    linked = False
    if settings.RELEASE_LINK_FILES:
        try:
            os.link(src, dst)
            linked = True
        except OSError:
            pass
    with (dst if linked else src).open("rb") as reader, (nullcontext() if linked else dst.open("wb")) as writer:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
            if writer is not None:
                writer.write(chunk)
            size += len(chunk)
            beat()
    return size, digest.hexdigest()


def _copy_export(*, source: Path, target: Path, prefix: str, beat: Callable[[], None]) -> dict[str, tuple[int, str]]:
    copied = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        copied[f"{prefix}/{relative}"] = _copy_hashed(path, target / relative, beat=beat)
    # The trainer wrote SHA256SUMS for each export; a mismatch means a damaged export or copy.
    if (source / SUMS).is_file():
        for line in (source / SUMS).read_text(encoding="utf-8").splitlines():
            digest, name = line.split("  ", 1)
            if copied.get(f"{prefix}/{name}", (0, ""))[1] != digest:
                raise ValidationError(f"export/{prefix}/{name} does not match the export's {SUMS}.",
                                      code="export_mismatch")
    return copied


def _release_stage(*, release: Release, run: TrainingRun, folder: Path, beat: Callable[[], None]) -> _Staged:
    export = Path(settings.ARTIFACT_ROOT) / run.run_dir / contract.EXPORT
    if not run.run_dir or not (export / contract.EXPORT_MERGED).is_dir():
        raise ValidationError(f"Run {run.pk} has no exported checkpoint (export/merged).", code="no_export")
    folder.mkdir(parents=True)
    files: dict[str, tuple[int, str]] = {}
    for name in EXPORTS:
        if (export / name).is_dir():
            files |= _copy_export(source=export / name, target=folder / name, prefix=name, beat=beat)
    card = release_model_card(release=release, run=run, exports=[n for n in EXPORTS if (folder / n).is_dir()],
                              sentencepiece=(folder / contract.EXPORT_MERGED / "tokenizer.model").is_file())
    (folder / CARD).write_text(card, encoding="utf-8")
    files[CARD] = (len(card.encode("utf-8")), hashlib.sha256(card.encode("utf-8")).hexdigest())
    sums = "".join(f"{digest}  {name}\n" for name, (_, digest) in sorted(files.items()))
    (folder / SUMS).write_text(sums, encoding="utf-8")
    files[SUMS] = (len(sums.encode("utf-8")), hashlib.sha256(sums.encode("utf-8")).hexdigest())
    return _Staged(folder=folder, files=files, card=card, sums=sums)


@transaction.atomic
def _release_install(*, release: Release, staged: _Staged, by: User | None, attempt: int) -> Release:
    locked = job_lock(PUBLISH_JOB, pk=release.pk, attempt=attempt)
    final = Path(settings.ARTIFACT_ROOT) / "releases" / locked.tag
    if final.exists():
        # Left by an attempt that failed after the move; that release was never published.
        shutil.rmtree(final)
    staged.folder.rename(final)
    ReleaseFile.objects.filter(release=locked).delete()
    ReleaseFile.objects.bulk_create(
        ReleaseFile(release=locked, name=name, size=size, sha256=digest)
        for name, (size, digest) in staged.files.items()
    )
    locked.path, locked.model_card, locked.sha256sums = f"releases/{locked.tag}", staged.card, staged.sums
    locked.save(update_fields=["path", "model_card", "sha256sums"])
    published = release_transition(release=locked, to_status=ReleaseStatus.PUBLISHED, actor=by)
    _cases_mark_released(release=published, by=by)
    return published


def _cases_mark_released(*, release: Release, by: User | None) -> None:
    # Moves made by the system on the publisher's behalf; the audit trail names them when they may triage.
    actor = by if by is not None and user_is_maintainer(user=by) else None
    note = f"Released in {release.tag}."
    for case in release_cases(release=release):
        if case.status == CaseStatus.IN_BATCH:
            case = case_transition(case=case, to_status=CaseStatus.TRAINED, actor=actor, note=note)
        if case.status == CaseStatus.TRAINED:
            case_transition(case=case, to_status=CaseStatus.RELEASED, actor=actor, note=note)


def _metric_rows(evaluation: Evaluation | None) -> list[tuple[str, str, str, str]]:
    """(scope, metric, before, after) for every number in the evaluation's base and tuned metrics."""

    def flat(values: dict[str, object], prefix: str = "") -> dict[str, float]:
        found: dict[str, float] = {}
        for key, value in values.items():
            if isinstance(value, dict):
                found |= flat(value, f"{prefix}{key}.")
            elif isinstance(value, int | float) and not isinstance(value, bool):
                found[f"{prefix}{key}"] = value
        return found

    if evaluation is None:
        return []
    before, after = flat(evaluation.base_metrics or {}), flat(evaluation.tuned_metrics or {})
    show = lambda value: "—" if value is None else f"{value:.4g}"  # noqa: E731
    return [
        (key.rpartition(".")[0] or "all", key.rpartition(".")[2], show(before.get(key)), show(after.get(key)))
        for key in sorted(before.keys() | after.keys())
    ]


def release_model_card(*, release: Release, run: TrainingRun, exports: list[str], sentencepiece: bool = False) -> str:
    """README.md of a release: YAML metadata, then base model, data, cases, metrics, license and usage.

    `sentencepiece`: the merged folder ships a `tokenizer.model`, so Yuan's own
    `LlamaTokenizer` recipe applies too.
    """
    batch = _batch_of(run)
    version = batch.dataset_version
    evaluation = Evaluation.objects.filter(run=run).first()
    cases = list(release_cases(release=release))
    languages = sorted({code for case in cases for code in HF_LANGUAGES.get(case.language, [])})
    meta = {
        "license": settings.RELEASE_LICENSE,
        "language": languages,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["yuan2", "lfa", "cotrain", run.method],
        "cotrain": {
            "tag": release.tag,
            "run": run.pk,
            "base_checkpoint": run.base_name,
            "dataset": batch.name,
            "dataset_content_hash": version.content_hash,
            "evaluation": evaluation.status if evaluation else "missing",
        },
    }
    context = {
        "front_matter": yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip(),
        "release": release,
        "run": run,
        "recipe": json.dumps(run.recipe, ensure_ascii=False, sort_keys=True),
        "batch": batch,
        "version": version,
        "cases": [(case, case_url(case=case)) for case in cases],
        "evaluation": evaluation,
        "metrics": _metric_rows(evaluation),
        "exports": exports,
        "sentencepiece": sentencepiece,
        "license": settings.RELEASE_LICENSE,
        "page_url": settings.SITE_URL + reverse("releases:detail", args=[release.tag]),
    }
    return render_to_string("releases/model_card.md", context)


def release_publish(*, run: TrainingRun, by: User, tag: str | None = None, override_reason: str = "") -> Release:
    """Publish a succeeded run's export as a release; see the module docstring for the steps.

    Raises PermissionDenied without `releases.publish_release` (or, to override a
    blocking or missing evaluation, `training.override_evaluation`), and
    ValidationError when the run, its evaluation, its export or the tag do not allow it.
    """
    release = _release_claim(run=run, by=by, tag=tag, override_reason=override_reason)
    return release_copy_files(release_id=release.pk, by_id=by.pk)


def release_request(*, run: TrainingRun, by: User, tag: str | None = None, override_reason: str = "") -> Release:
    """What the publish page calls: the same checks as `release_publish`, then the copy runs in a task.

    Returns the release while it is `publishing`; checkpoints of billions of
    parameters take longer to copy than a web request should.
    """
    release = _release_claim(run=run, by=by, tag=tag, override_reason=override_reason)
    # A broker that is down costs a delay: the release waits `publishing`, and the sweeper sends it again.
    job_send(PUBLISH_JOB, release)
    return release


def _release_copy_claim(*, release_id: int) -> int | None:
    """Start copy attempt N of a `publishing` release (None when it is not): the newest attempt owns it."""
    # No status move: the release stays `publishing`, and the attempt number says which copy owns it.
    claimed = job_claim(PUBLISH_JOB, pk=release_id, claim=PUBLISH_JOB.claim_in_place)
    return None if claimed is None else claimed.publish_attempts


def release_copy_files(*, release_id: int, by_id: int | None) -> Release:
    """Copy, install and publish a claimed release (the task's body); safe to run twice.

    A release that is no longer `publishing` is returned as it is. Each run claims
    a new attempt and stages into a fresh folder (leftovers of killed attempts are
    removed first); only the newest attempt may install, under the row lock.
    """
    attempt = _release_copy_claim(release_id=release_id)
    if attempt is None:
        return Release.objects.get(pk=release_id)
    release = Release.objects.select_related("run").get(pk=release_id)
    by = User.objects.filter(pk=by_id).first() if by_id else None
    releases_root = Path(settings.ARTIFACT_ROOT) / "releases"
    # A killed copy never reached its `finally`. An older copy still running loses its claim anyway.
    for leftover in releases_root.glob(f".{release.tag}.staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = releases_root / f".{release.tag}.staging-{attempt}"
    beat = Heartbeat(PUBLISH_JOB, pk=release_id, attempt=attempt,
                     every_s=min(10.0, settings.RELEASE_PUBLISH_TIMEOUT_SECONDS / 10))
    try:
        staged = _release_stage(release=release, run=release.run, folder=staging, beat=beat)
        return _release_install(release=release, staged=staged, by=by, attempt=attempt)
    except ClaimLost:
        return Release.objects.get(pk=release_id)
    except Exception as exc:
        if not _release_fail(release=release, error=exc, attempt=attempt):
            return Release.objects.get(pk=release_id)  # another copy published it or took it over
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def release_on_stale(release: Release) -> str:
    """The sweeper's move for a release whose copy went silent: "requeued" (a new attempt is sent after
    commit) or "failed" (its attempts are spent; the reason is in the notes)."""
    if release.publish_attempts >= settings.RELEASE_PUBLISH_MAX_ATTEMPTS:
        _release_note_failure(release, f"{release.publish_attempts} copy attempt(s) stopped without finishing (no "
                                       f"heartbeat for {settings.RELEASE_PUBLISH_TIMEOUT_SECONDS} s; the worker was "
                                       "probably killed). Publish the run again to retry.")
        return "failed"
    # Stamped fresh, so the next sweep waits a whole timeout for the queued attempt to start.
    job_send(PUBLISH_JOB, release)
    return "requeued"


def _release_note_failure(locked: Release, reason: str) -> None:
    # The newest reason is the one a maintainer needs: the notes keep their end, not their start.
    locked.notes = keep_newest(f"{locked.notes}\nPublishing failed: {reason}".strip(), NOTES_CHARS)
    locked.save(update_fields=["notes"])
    release_transition(release=locked, to_status=ReleaseStatus.FAILED, actor=None)


@transaction.atomic
def _release_fail(*, release: Release, error: Exception, attempt: int) -> bool:
    """Record the failure; False when this attempt no longer owns a `publishing` release (nothing to record)."""
    try:
        locked = job_lock(PUBLISH_JOB, pk=release.pk, attempt=attempt)
    except ClaimLost:
        return False
    _release_note_failure(locked, repr(error))
    return True


def release_withdraw(*, release: Release, by: User, reason: str) -> Release:
    """Hide a published release from the public pages, API and downloads (its files stay for audit)."""
    if by is None or not by.has_perm(PUBLISH_PERMISSION):
        raise PermissionDenied("Only maintainers can withdraw releases.")
    if not reason.strip():
        raise ValidationError("Say why the release is withdrawn.", code="reason_required")
    with transaction.atomic():
        withdrawn = release_transition(release=release, to_status=ReleaseStatus.WITHDRAWN, actor=by)
        withdrawn.notes = f"{withdrawn.notes}\nWithdrawn by {by.username}: {reason.strip()}".strip()
        withdrawn.save(update_fields=["notes"])
    return withdrawn


def release_file_count_download(*, file_id: int) -> None:
    ReleaseFile.objects.filter(pk=file_id).update(download_count=F("download_count") + 1)

"""Publishing releases (releases.services): permission, evaluation gate, files, model card, cases released."""

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.text import slugify
from trainer.checkpoint import load_model, verify_sha256sums, write_sha256sums

from accounts.models import User
from accounts.services import user_create
from cotrain_site import celery_app
from curation.models import DatasetVersion
from intake.models import CaseStatus, FeedbackCase
from releases.models import Release, ReleaseFile, ReleaseStatus
from releases.selectors import release_abspath, releases_for_case
from releases.services import release_publish, release_withdraw
from training.models import Evaluation, EvaluationStatus, TrainingRun

from .conftest import PASSWORD
from .loop_factories import built_version, finished_run, write_export

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.SITE_URL = "https://cotrain.example.org"


@pytest.fixture
def version(contributor: User, maintainer: User) -> DatasetVersion:
    return built_version(author=contributor, maintainer=maintainer)


@pytest.fixture
def publishable(version: DatasetVersion, maintainer: User) -> Callable[..., TrainingRun]:
    def make(evaluation: str | None = EvaluationStatus.PASSED, adapter: bool = True) -> TrainingRun:
        run = finished_run(version=version, maintainer=maintainer, evaluation=evaluation)
        write_export(run, adapter=adapter)
        return run

    return make


def test_publish_copies_the_export_with_checksums_and_a_loadable_checkpoint(
    publishable: Callable, maintainer: User, settings
) -> None:
    run = publishable()
    release = release_publish(run=run, by=maintainer, tag="yuan2-tiny-2024-02")
    assert release.status == ReleaseStatus.PUBLISHED and release.published_by == maintainer
    folder = release_abspath(release=release)
    assert folder == settings.ARTIFACT_ROOT / "releases" / "yuan2-tiny-2024-02"
    names = set(ReleaseFile.objects.filter(release=release).values_list("name", flat=True))
    expected = {"README.md", "SHA256SUMS", "merged/config.json", "merged/SHA256SUMS", "adapter/adapter_config.json"}
    assert expected <= names
    assert names == {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    # SHA256SUMS covers every other file, in `sha256sum -c` format, and each row's size and hash are true.
    assert verify_sha256sums(folder) == [] and verify_sha256sums(folder / "merged") == []
    assert len((folder / "SHA256SUMS").read_text().splitlines()) == len(names) - 1
    for file in ReleaseFile.objects.filter(release=release):
        assert (folder / file.name).stat().st_size == file.size
    assert release.sha256sums == (folder / "SHA256SUMS").read_text()
    model = load_model(folder / "merged")
    assert model.config.hidden_size == 64
    # Nothing is left half-copied beside the release.
    assert [p.name for p in (settings.ARTIFACT_ROOT / "releases").iterdir()] == ["yuan2-tiny-2024-02"]


@pytest.mark.parametrize("link", [True, False])
def test_release_files_are_links_to_the_export_and_outlive_the_run_folder(
    publishable: Callable, maintainer: User, settings, link: bool
) -> None:
    import shutil

    settings.RELEASE_LINK_FILES = link
    run = publishable()
    export = settings.ARTIFACT_ROOT / run.run_dir / "export"
    release = release_publish(run=run, by=maintainer, tag=f"linked-{link}")
    folder = release_abspath(release=release)
    weights = next((folder / "merged").glob("*.safetensors"))
    shared = weights.stat().st_ino == (export / "merged" / weights.name).stat().st_ino
    assert shared is link  # no gigabytes copied where a link is allowed; a copy where it is switched off
    # A re-export (trainer.export removes the old folder first) and then a deleted run folder leave it intact.
    shutil.rmtree(settings.ARTIFACT_ROOT / run.run_dir)
    assert verify_sha256sums(folder) == [] and verify_sha256sums(folder / "merged") == []
    assert load_model(folder / "merged").config.hidden_size == 64


def test_a_release_store_that_refuses_links_gets_copies(
    publishable: Callable, maintainer: User, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    release = release_publish(run=publishable(), by=maintainer, tag="copied")
    assert release.status == ReleaseStatus.PUBLISHED
    assert verify_sha256sums(release_abspath(release=release) / "merged") == []


def test_model_card_says_what_was_trained_on_what_and_how_to_load_it(
    publishable: Callable, maintainer: User, version: DatasetVersion
) -> None:
    release = release_publish(run=publishable(), by=maintainer)
    card = (release_abspath(release=release) / "README.md").read_text(encoding="utf-8")
    assert card == release.model_card
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "apache-2.0" and front["language"] == ["en", "zh"]
    assert front["cotrain"]["dataset_content_hash"] == version.content_hash
    assert front["cotrain"]["base_checkpoint"] == "demo" and front["cotrain"]["evaluation"] == "passed"
    assert "AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)" in card
    assert "PeftModel.from_pretrained" in card
    for case in FeedbackCase.objects.all():
        assert f"[#{case.pk} {case.scenario}](https://cotrain.example.org/cases/{case.pk}/)" in card
    assert "| cases | chrf | 21.5 | 63 |" in card and "| general | chrf | 40.2 | 39.9 |" in card
    assert "https://cotrain.example.org/releases/plan-test-run-" in card


def test_default_tag_and_cases_move_to_released(publishable: Callable, maintainer: User, contributor: User) -> None:
    run = publishable()
    release = release_publish(run=run, by=maintainer)
    assert release.tag == slugify(f"plan-test-run-{run.pk}")
    cases = FeedbackCase.objects.filter(author=contributor)
    assert {case.status for case in cases} == {CaseStatus.RELEASED}
    case = cases.first()
    assert list(case.events.values_list("to_status", flat=True))[-2:] == ["trained", "released"]
    assert case.events.last().note == f"Released in {release.tag}." and case.events.last().actor == maintainer
    assert list(releases_for_case(case=case)) == [release]


def test_publishing_needs_the_permission(publishable: Callable, contributor: User) -> None:
    run = publishable()
    with pytest.raises(PermissionDenied):
        release_publish(run=run, by=contributor)
    assert not Release.objects.exists()


@pytest.mark.parametrize("evaluation", [EvaluationStatus.BLOCKED, EvaluationStatus.FAILED, None])
def test_a_blocking_or_missing_evaluation_stops_publishing(
    publishable: Callable, maintainer: User, evaluation: str | None
) -> None:
    run = publishable(evaluation=evaluation)
    with pytest.raises(ValidationError, match=f"evaluation is {evaluation or 'missing'}"):
        release_publish(run=run, by=maintainer)
    assert not Release.objects.exists()
    assert {c.status for c in FeedbackCase.objects.all()} == {CaseStatus.IN_BATCH}


def test_override_needs_the_override_permission(publishable: Callable, maintainer: User) -> None:
    from django.contrib.auth.models import Permission

    publisher = user_create(username="publisher", password=PASSWORD)
    publisher.user_permissions.add(Permission.objects.get(codename="publish_release"))
    run = publishable(evaluation=EvaluationStatus.BLOCKED)
    with pytest.raises(PermissionDenied, match="override"):
        release_publish(run=run, by=User.objects.get(pk=publisher.pk), override_reason="The general set noise.")
    assert not Release.objects.exists()


def test_a_maintainer_overrides_a_blocked_evaluation_with_a_reason(publishable: Callable, maintainer: User) -> None:
    run = publishable(evaluation=EvaluationStatus.BLOCKED)
    reason = "General chrF fell 0.3 points, within noise on 20 examples; the requested cases improved a lot."
    release = release_publish(run=run, by=maintainer, override_reason=reason)
    assert release.status == ReleaseStatus.PUBLISHED and reason in release.notes and reason in release.model_card
    evaluation = Evaluation.objects.get(run=run)
    assert (evaluation.status, evaluation.override_by, evaluation.override_reason) == ("overridden", maintainer, reason)


def test_a_run_is_released_once_and_tags_are_unique(
    publishable: Callable, maintainer: User, contributor: User, version: DatasetVersion
) -> None:
    run = publishable()
    release_publish(run=run, by=maintainer, tag="v1")
    with pytest.raises(ValidationError, match="already released as v1"):
        release_publish(run=run, by=maintainer, tag="v2")
    second = finished_run(version=version, maintainer=maintainer)
    write_export(second)
    with pytest.raises(ValidationError, match="tag v1 is taken"):
        release_publish(run=second, by=maintainer, tag="v1")
    with pytest.raises(ValidationError, match="letters, digits"):
        release_publish(run=second, by=maintainer, tag="../v3")
    assert Release.objects.count() == 1


def test_a_failed_publish_is_recorded_and_can_be_retried(publishable: Callable, maintainer: User, settings) -> None:
    run = publishable()
    merged = Path(settings.ARTIFACT_ROOT) / run.run_dir / "export" / "merged"
    config = merged / "config.json"
    original = config.read_bytes()
    config.write_bytes(original.replace(b"64", b"65", 1))  # no longer matches the export's SHA256SUMS
    with pytest.raises(ValidationError, match="does not match"):
        release_publish(run=run, by=maintainer, tag="v1")
    release = Release.objects.get(run=run)
    assert release.status == ReleaseStatus.FAILED and "Publishing failed" in release.notes
    assert not ReleaseFile.objects.exists() and not list((settings.ARTIFACT_ROOT / "releases").iterdir())
    assert {c.status for c in FeedbackCase.objects.all()} == {CaseStatus.IN_BATCH}
    config.write_bytes(original)
    assert release_publish(run=run, by=maintainer, tag="v1").status == ReleaseStatus.PUBLISHED


def test_a_run_without_an_export_cannot_be_published(publishable: Callable, maintainer: User, version) -> None:
    run = finished_run(version=version, maintainer=maintainer)
    with pytest.raises(ValidationError, match="no exported checkpoint"):
        release_publish(run=run, by=maintainer)


def test_merged_only_release_when_there_is_no_adapter(publishable: Callable, maintainer: User) -> None:
    release = release_publish(run=publishable(adapter=False), by=maintainer)
    names = list(ReleaseFile.objects.filter(release=release).values_list("name", flat=True))
    assert not [n for n in names if n.startswith("adapter/")] and "PeftModel" not in release.model_card


def test_card_gives_yuans_llamatokenizer_recipe_only_with_a_sentencepiece_model(
    publishable: Callable, maintainer: User, settings
) -> None:
    byte_release = release_publish(run=publishable(), by=maintainer, tag="byte-tokenizer")
    assert "LlamaTokenizer" not in byte_release.model_card
    run = publishable()
    merged = Path(settings.ARTIFACT_ROOT) / run.run_dir / "export" / "merged"
    (merged / "tokenizer.model").write_bytes(b"sentencepiece model bytes")
    write_sha256sums(merged)
    card = release_publish(run=run, by=maintainer, tag="sentencepiece-tokenizer").model_card
    assert 'LlamaTokenizer.from_pretrained(path, add_eos_token=False, add_bos_token=False, eos_token="<eod>")' in card
    assert "| `AutoTokenizer`, `trust_remote_code=True` | checked | checked | checked |" in card


def test_withdrawn_releases_leave_the_public_list(publishable: Callable, maintainer: User) -> None:
    release = release_publish(run=publishable(), by=maintainer)
    case = FeedbackCase.objects.first()
    withdrawn = release_withdraw(release=release, by=maintainer, reason="A licence problem in one case.")
    assert withdrawn.status == ReleaseStatus.WITHDRAWN and "licence problem" in withdrawn.notes
    assert list(releases_for_case(case=case)) == []
    assert (release_abspath(release=withdrawn) / "SHA256SUMS").is_file()  # files are kept for audit


class _Killed(BaseException):
    """Stands for SIGKILL mid-copy: no `except Exception` sees it, so nothing marks the release failed."""


def _publish_killed_mid_copy(*, run: TrainingRun, maintainer: User, monkeypatch) -> Release:
    from releases import services
    from releases.services import release_request

    real_copy = services._copy_hashed

    def copy_then_die(src: Path, dst: Path, *, beat: Callable[[], None]) -> tuple[int, str]:
        real_copy(src, dst, beat=beat)
        raise _Killed

    release = release_request(run=run, by=maintainer, tag="v1")
    monkeypatch.setattr(services, "_copy_hashed", copy_then_die)
    with pytest.raises(_Killed):
        services.release_copy_files(release_id=release.pk, by_id=maintainer.pk)
    monkeypatch.setattr(services, "_copy_hashed", real_copy)
    return Release.objects.get(pk=release.pk)


def _go_silent(release: Release, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    # The copy's worker is gone: its last heartbeat is older than the timeout.
    late = timezone.now() - timedelta(seconds=settings.RELEASE_PUBLISH_TIMEOUT_SECONDS + 1)
    Release.objects.filter(pk=release.pk).update(heartbeat_at=late)


def test_a_publish_killed_mid_copy_is_taken_over_by_the_sweeper(
    publishable: Callable, maintainer: User, settings, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from releases.tasks import publish_release, sweep_stale_publishing

    release = _publish_killed_mid_copy(run=publishable(), maintainer=maintainer, monkeypatch=monkeypatch)
    assert release.status == ReleaseStatus.PUBLISHING and release.publish_attempts == 1
    releases_root = settings.ARTIFACT_ROOT / "releases"
    # SIGKILL runs no `finally`: a half-written staging folder stays behind.
    (releases_root / ".v1.staging-1" / "merged").mkdir(parents=True)
    (releases_root / ".v1.staging-1" / "merged" / "model.safetensors").write_bytes(b"half")
    sent: list[tuple] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: sent.append(tuple(args)))
    # Within the timeout the copy may still be alive: nothing is taken over.
    assert sweep_stale_publishing.run() == {"requeued": 0, "failed": 0, "lost": 0} and sent == []
    _go_silent(release, settings)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale_publishing.run() == {"requeued": 1, "failed": 0, "lost": 0}
    assert sent == [(release.pk, maintainer.pk)]
    # Queued again, it is not swept twice while the new attempt gets going.
    assert sweep_stale_publishing.run() == {"requeued": 0, "failed": 0, "lost": 0}
    assert publish_release.run(*sent[0])["status"] == ReleaseStatus.PUBLISHED
    assert publish_release.run(*sent[0])["status"] == ReleaseStatus.PUBLISHED  # safe to run twice
    release.refresh_from_db()
    assert release.publish_attempts == 2 and release.published_by == maintainer
    folder = release_abspath(release=release)
    assert [p.name for p in releases_root.iterdir()] == ["v1"]
    assert verify_sha256sums(folder) == [] and verify_sha256sums(folder / "merged") == []
    assert {c.status for c in FeedbackCase.objects.all()} == {CaseStatus.RELEASED}


def test_a_publish_that_keeps_dying_is_failed_with_the_reason_and_can_be_retried(
    publishable: Callable, maintainer: User, settings, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    from releases.tasks import sweep_stale_publishing

    settings.RELEASE_PUBLISH_MAX_ATTEMPTS = 2
    run = publishable()
    release = _publish_killed_mid_copy(run=run, maintainer=maintainer, monkeypatch=monkeypatch)
    sent: list[tuple] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: sent.append(tuple(args)))
    _go_silent(release, settings)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale_publishing.run() == {"requeued": 1, "failed": 0, "lost": 0}
    from releases.services import _release_copy_claim

    assert _release_copy_claim(release_id=release.pk) == 2  # the second attempt starts, then dies silently too
    _go_silent(release, settings)
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stale_publishing.run() == {"requeued": 0, "failed": 1, "lost": 0}
    assert len(sent) == 1
    release.refresh_from_db()
    assert release.status == ReleaseStatus.FAILED
    assert "2 copy attempt(s) stopped without finishing" in release.notes and "Publish the run again" in release.notes
    assert {c.status for c in FeedbackCase.objects.all()} == {CaseStatus.IN_BATCH}
    # A maintainer publishes again: the attempts count afresh.
    assert release_publish(run=run, by=maintainer, tag="v1").status == ReleaseStatus.PUBLISHED


def test_an_older_copy_taken_over_mid_way_installs_nothing(
    publishable: Callable, maintainer: User, monkeypatch
) -> None:
    from releases import services
    from releases.services import release_request

    release = release_request(run=publishable(), by=maintainer, tag="v1")
    real_copy = services._copy_hashed
    taken_over: list[int | None] = []

    def copy_while_a_newer_attempt_claims(src: Path, dst: Path, *, beat: Callable[[], None]) -> tuple[int, str]:
        if not taken_over:  # the sweeper requeued it and another worker's copy claimed it
            taken_over.append(services._release_copy_claim(release_id=release.pk))
        return real_copy(src, dst, beat=beat)

    monkeypatch.setattr(services, "_copy_hashed", copy_while_a_newer_attempt_claims)
    stale = services.release_copy_files(release_id=release.pk, by_id=maintainer.pk)
    assert taken_over == [2]
    assert stale.status == ReleaseStatus.PUBLISHING and not ReleaseFile.objects.exists()
    assert "Publishing failed" not in stale.notes
    monkeypatch.setattr(services, "_copy_hashed", real_copy)
    assert services.release_copy_files(release_id=release.pk, by_id=maintainer.pk).status == ReleaseStatus.PUBLISHED


def test_the_release_sweeper_is_on_the_beat_schedule() -> None:
    from django.conf import settings

    entries = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "releases.tasks.sweep_stale_publishing" in entries

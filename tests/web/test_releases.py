"""Publishing releases (releases.services): permission, evaluation gate, files, model card, cases released."""

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.text import slugify
from trainer.checkpoint import load_model, verify_sha256sums

from accounts.models import User
from accounts.services import user_create
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


def test_withdrawn_releases_leave_the_public_list(publishable: Callable, maintainer: User) -> None:
    release = release_publish(run=publishable(), by=maintainer)
    case = FeedbackCase.objects.first()
    withdrawn = release_withdraw(release=release, by=maintainer, reason="A licence problem in one case.")
    assert withdrawn.status == ReleaseStatus.WITHDRAWN and "licence problem" in withdrawn.notes
    assert list(releases_for_case(case=case)) == []
    assert (release_abspath(release=withdrawn) / "SHA256SUMS").is_file()  # files are kept for audit

"""Each status-transition service refuses a move its table does not allow, names the row, writes nothing."""

from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from curation.models import BatchStatus, DatasetBatch, DatasetVersion, DatasetVersionStatus
from curation.services import batch_transition, dataset_version_transition
from intake.models import CaseStatus, FeedbackCase
from intake.services import case_transition
from releases.models import Release, ReleaseStatus
from releases.services import release_transition
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun
from training.services import evaluation_transition, run_transition

from .loop_factories import approved_batch, built_version, finished_run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def test_refused_moves_name_the_row_and_leave_its_status(contributor: User, maintainer: User) -> None:
    batch = approved_batch(author=contributor, maintainer=maintainer)
    with pytest.raises(ValidationError, match=f"Batch {batch.name} is approved; it cannot become draft"):
        batch_transition(batch=batch, to_status=BatchStatus.DRAFT, actor=maintainer)
    assert DatasetBatch.objects.get(pk=batch.pk).status == BatchStatus.APPROVED

    # A case in an approved batch stays in it: approval is final, nothing takes it back to accepted.
    case = FeedbackCase.objects.filter(status=CaseStatus.IN_BATCH).first()
    assert case is not None
    with pytest.raises(ValidationError, match="cannot"):
        case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=None)
    assert FeedbackCase.objects.get(pk=case.pk).status == CaseStatus.IN_BATCH

    version = DatasetVersion.objects.get(batch=batch)
    with pytest.raises(ValidationError, match=f"Dataset version {version.pk} is pending; it cannot become ready"):
        dataset_version_transition(version=version, to_status=DatasetVersionStatus.READY)
    assert DatasetVersion.objects.get(pk=version.pk).status == DatasetVersionStatus.PENDING


def test_finished_runs_and_evaluations_stay_finished(contributor: User, maintainer: User) -> None:
    run = finished_run(version=built_version(author=contributor, maintainer=maintainer), maintainer=maintainer)
    with pytest.raises(ValidationError, match=f"Run {run.pk} is succeeded; it cannot become running"):
        run_transition(run=run, to_status=RunStatus.RUNNING)
    stored = TrainingRun.objects.get(pk=run.pk)
    assert (stored.status, stored.attempt) == (RunStatus.SUCCEEDED, 1)

    evaluation = Evaluation.objects.get(run=run)
    with pytest.raises(ValidationError, match=f"Evaluation {evaluation.pk} is passed; it cannot become blocked"):
        evaluation_transition(evaluation=evaluation, to_status=EvaluationStatus.BLOCKED)
    assert Evaluation.objects.get(pk=evaluation.pk).status == EvaluationStatus.PASSED

    release = Release.objects.create(tag="yuan2-test-1", run=run, status=ReleaseStatus.PUBLISHED)
    with pytest.raises(ValidationError, match="Release yuan2-test-1 is published; it cannot become publishing"):
        release_transition(release=release, to_status=ReleaseStatus.PUBLISHING, actor=maintainer)
    assert Release.objects.get(pk=release.pk).status == ReleaseStatus.PUBLISHED

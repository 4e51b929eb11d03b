"""The run pages: list and start form, run page (progress, curve, log, evaluation), cancel and override."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.urls import reverse

from accounts.models import User
from curation.models import DatasetVersion
from training.models import EvaluationStatus, RunStatus, TrainingRun
from training.selectors import run_dir_abspath
from training.services import evaluation_claim, evaluation_record, run_claim, run_finish, run_start

from .loop_factories import built_version
from .training_support import TINY_RECIPE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path, install_tiny_base: Callable[[Path], Path]) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.DEMO_BASE_CHECKPOINT = install_tiny_base(tmp_path / "artifacts" / "models" / "yuan2-tiny-demo")


@pytest.fixture
def version(contributor: User, maintainer: User) -> DatasetVersion:
    return built_version(author=contributor, maintainer=maintainer)


@pytest.fixture
def run(version: DatasetVersion, maintainer: User) -> TrainingRun:
    return run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=maintainer)


def _form(version: DatasetVersion, **changes: object) -> dict:
    data = {**TINY_RECIPE.as_json(), "version": version.pk, "base_checkpoint": "demo", **changes}
    data.pop("eval_max_examples")
    return data


def test_maintainer_starts_a_run_from_the_form(client_for, maintainer: User, version: DatasetVersion) -> None:
    client = client_for(maintainer)
    assert b"Start a run" in client.get(reverse("training:run_list")).content
    response = client.post(reverse("training:run_start"), _form(version))
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("training:run_detail", args=[run.pk])
    assert run.recipe["max_steps"] == 8 and run.recipe["lora_targets"] == list(TINY_RECIPE.lora_targets)
    again = client.post(reverse("training:run_start"), _form(version))
    assert again.status_code == 400 and f"already has run #{run.pk}".encode() in again.content


def test_the_form_explains_a_bad_recipe(client_for, maintainer: User, version: DatasetVersion) -> None:
    response = client_for(maintainer).post(reverse("training:run_start"),
                                           _form(version, warmup_steps=50, lora_targets=["q_proj"]))
    assert response.status_code == 400 and b"Warm-up cannot be longer than the run" in response.content
    assert not TrainingRun.objects.exists()


def test_contributors_cannot_start_cancel_or_override(client_for, contributor: User, version: DatasetVersion,
                                                      run: TrainingRun) -> None:
    client = client_for(contributor)
    assert b"Start a run" not in client.get(reverse("training:run_list")).content
    assert client.post(reverse("training:run_start"), _form(version)).status_code == 403
    assert client.post(reverse("training:run_cancel", args=[run.pk])).status_code == 403
    assert client.post(reverse("training:evaluation_override", args=[run.pk]), {"reason": "x" * 20}).status_code == 403
    assert b"Cancel the run" not in client.get(reverse("training:run_detail", args=[run.pk])).content
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_run_page_shows_progress_curve_and_log_and_polls(client, client_for, maintainer: User,
                                                         run: TrainingRun) -> None:
    run = run_claim(run_id=run.pk, worker="w1")
    folder = run_dir_abspath(run=run)
    folder.mkdir(parents=True)
    with (folder / "metrics.jsonl").open("w") as fh:
        for step in range(1, 5):
            fh.write(json.dumps({"kind": "train", "step": step, "loss": 6 - step / 4, "eta_s": 8 - step,
                                 "total_steps": 8}) + "\n")
        fh.write(json.dumps({"kind": "eval", "step": 4, "eval_loss": 5.1}) + "\n")
    TrainingRun.objects.filter(pk=run.pk).update(step=4, last_loss=5.0, eta_seconds=4, log_tail="train: 4/8 loss=5.0")
    page = client_for(maintainer).get(reverse("training:run_detail", args=[run.pk])).content.decode()
    assert 'id="loss-curve"' in page and page.count("<polyline") == 2
    assert 'value="50"' in page and "train: 4/8 loss=5.0" in page and "Cancel the run" in page
    assert "progress.json" in page  # the poll
    progress = client.get(reverse("training:run_progress", args=[run.pk])).json()
    assert progress["step"] == 4 and progress["percent"] == 50 and progress["status"] == "running"
    assert progress["watch"] is True


def test_cancel_button(client_for, maintainer: User, run: TrainingRun) -> None:
    response = client_for(maintainer).post(reverse("training:run_cancel", args=[run.pk]), follow=True)
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert b"is cancelled" in response.content


def test_evaluation_table_and_override(client_for, maintainer: User, run: TrainingRun) -> None:
    run = run_finish(run=run_claim(run_id=run.pk, worker="w1"), status=RunStatus.SUCCEEDED, result={"steps": 8})
    same = {"loss": 3.0, "exact_match": 0.0, "chrf": 10.0}
    example = {"id": "case-7", "prompt": "小明有3个苹果", "reference": "6个", "delta_chrf": 0.0,
               "base": {"prediction": "10个", "chrf": 10.0}, "tuned": {"prediction": "8个", "chrf": 10.0}}
    comparison = {"summary": {"n": 1, "base": same, "tuned": same, "improved": 0, "regressed": 0, "unchanged": 1},
                  "examples": [example]}
    evaluation_record(evaluation=evaluation_claim(run_id=run.pk), cases=comparison, general=comparison)
    client = client_for(maintainer)
    page = client.get(reverse("training:run_detail", args=[run.pk])).content.decode()
    assert "did not improve" in page and "case-7" in page and "10个" in page and "8个" in page
    assert "Override and allow publishing" in page
    client.post(reverse("training:evaluation_override", args=[run.pk]), {"reason": "short"})
    assert run.evaluation.__class__.objects.get(run=run).status == EvaluationStatus.BLOCKED
    client.post(reverse("training:evaluation_override", args=[run.pk]),
                {"reason": "Base already answers these; the release carries the tokenizer fix."})
    assert run.evaluation.__class__.objects.get(run=run).status == EvaluationStatus.OVERRIDDEN
    assert "tokenizer fix" in client.get(reverse("training:run_detail", args=[run.pk])).content.decode()

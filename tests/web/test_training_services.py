"""training.services: starting, cancelling, claiming and recording runs; evaluation verdicts and overrides."""

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from trainer.config import ConfigError
from trainer.runconfig import RunConfig

from accounts.models import User
from cotrain_site.jobs import job_ids_stale, job_sweep
from curation.models import DatasetVersion
from curation.selectors import dataset_version_abspath
from training.models import Evaluation, EvaluationStatus, RunStatus, TrainingRun
from training.recipes import Recipe, recipe_from_json, run_config_build
from training.selectors import run_dir_abspath
from training.services import (
    EVALUATION_JOB,
    RUN_JOB,
    ClaimLost,
    evaluation_claim,
    evaluation_fail,
    evaluation_on_stale,
    evaluation_override,
    evaluation_record,
    evaluation_verdict,
    run_cancel,
    run_claim,
    run_execute,
    run_finish,
    run_on_stale,
    run_start,
)
from training.services.runs import _RunWatcher

from .loop_factories import built_version
from .training_support import TINY_RECIPE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.DEMO_BASE_CHECKPOINT = tmp_path / "artifacts" / "models" / "yuan2-tiny-demo"


@pytest.fixture
def version(contributor: User, maintainer: User) -> DatasetVersion:
    return built_version(author=contributor, maintainer=maintainer)


@pytest.fixture
def base(settings, install_tiny_base: Callable[[Path], Path]) -> str:
    install_tiny_base(Path(settings.DEMO_BASE_CHECKPOINT))
    return "demo"


def _start(version: DatasetVersion, maintainer: User, base: str = "demo", recipe: Recipe = TINY_RECIPE) -> TrainingRun:
    return run_start(version=version, base_checkpoint=base, recipe=recipe, by=maintainer)


# -- recipes ---------------------------------------------------------------------


def test_recipe_maps_onto_the_trainers_run_config_exactly(tmp_path: Path) -> None:
    config = run_config_build(recipe=TINY_RECIPE, base_checkpoint=tmp_path / "base", dataset_path=tmp_path / "data",
                              run_dir=tmp_path / "run")
    parsed = RunConfig.from_dict(config)  # unknown keys or wrong types would raise
    resolved = parsed.to_dict()
    for section, values in config.items():  # every value the platform writes reaches the trainer unchanged
        assert values == ({k: resolved[section][k] for k in values} if isinstance(values, dict) else resolved[section])
    assert parsed.train.max_steps == 8 and parsed.lora.r == 4 and parsed.data.seq_len == 64
    assert parsed.model.path == str(tmp_path / "base") and parsed.data.replay_path is None
    with_replay = run_config_build(recipe=Recipe(replay_ratio=0.2), base_checkpoint=tmp_path, dataset_path=tmp_path,
                                   run_dir=tmp_path)
    assert RunConfig.from_dict(with_replay).data.replay_path == "builtin"


@pytest.mark.parametrize(("change", "field"), [
    ({"max_steps": 0}, "max_steps"),
    ({"warmup_steps": 50, "max_steps": 10}, "warmup_steps"),
    ({"lr": -1.0}, "lr"),
    ({"seq_len": 4}, "seq_len"),
    ({"replay_ratio": 1.0}, "replay_ratio"),
    ({"lora_dropout": 1.0}, "lora_dropout"),
    ({"lora_targets": ["attn"]}, "lora_targets"),
    ({"method": "qlora"}, "method"),
])
def test_recipe_refuses_what_the_trainer_refuses(change: dict, field: str, tmp_path: Path) -> None:
    raw = {**Recipe().as_json(), **change}
    with pytest.raises(ValidationError) as exc:
        recipe_from_json(raw)
    assert field in exc.value.message_dict
    # The trainer agrees (the platform's check only answers earlier, with a form error).
    unchecked = Recipe(**{**raw, "lora_targets": tuple(raw["lora_targets"])})
    config = run_config_build(recipe=unchecked, base_checkpoint=tmp_path, dataset_path=tmp_path, run_dir=tmp_path)
    with pytest.raises(ConfigError):
        RunConfig.from_dict(config)


def test_recipe_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="learning_rate"):
        recipe_from_json({"learning_rate": 0.1})


# -- start and cancel --------------------------------------------------------------


def test_run_start_queues_and_enqueues_after_commit(version: DatasetVersion, maintainer: User, base: str,
                                                    django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = _start(version, maintainer)
    assert run.status == RunStatus.QUEUED and run.run_dir == f"runs/{run.pk}" and run.total_steps == 8
    assert run.recipe == TINY_RECIPE.as_json() and run.created_by == maintainer
    assert len(callbacks) == 1


def test_a_second_active_run_on_the_batch_is_refused(version: DatasetVersion, maintainer: User, base: str) -> None:
    first = _start(version, maintainer)
    with pytest.raises(ValidationError, match=rf"already has run #{first.pk}"):
        _start(version, maintainer)
    # The database refuses it too, whatever path a write takes.
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(dataset_version=version, base_checkpoint="demo")
    run_cancel(run=first, by=maintainer)
    assert _start(version, maintainer).pk != first.pk  # a finished run no longer blocks


def test_only_maintainers_start_and_cancel(version: DatasetVersion, contributor: User, maintainer: User,
                                           base: str) -> None:
    with pytest.raises(PermissionDenied):
        run_start(version=version, base_checkpoint="demo", recipe=TINY_RECIPE, by=contributor)
    run = _start(version, maintainer)
    with pytest.raises(PermissionDenied):
        run_cancel(run=run, by=contributor)


def test_run_start_explains_a_missing_base(version: DatasetVersion, maintainer: User, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="demo-base"):
        _start(version, maintainer, base="demo")
    with pytest.raises(ValidationError, match="absolute"):
        _start(version, maintainer, base="models/yuan")
    with pytest.raises(ValidationError, match=r"no config\.json"):
        _start(version, maintainer, base=str(tmp_path))
    assert not TrainingRun.objects.exists()


def test_cancel_a_queued_run_at_once_and_a_running_one_through_its_worker(version: DatasetVersion,
                                                                           maintainer: User, base: str) -> None:
    run = _start(version, maintainer)
    assert run_cancel(run=run, by=maintainer).status == RunStatus.CANCELLED
    assert run_claim(run_id=run.pk, worker="w1") is None  # the queued message finds nothing to do
    run = _start(version, maintainer)
    run = run_claim(run_id=run.pk, worker="w1")
    assert run_cancel(run=run, by=maintainer).status == RunStatus.CANCELLING
    assert _RunWatcher(run=run, run_dir=run_dir_abspath(run=run)).cancel_requested()
    with pytest.raises(ValidationError, match="nothing to cancel"):
        run_cancel(run=TrainingRun.objects.get(pk=run.pk), by=maintainer)


# -- the worker side ---------------------------------------------------------------


def test_claim_is_guarded_and_a_dead_workers_run_is_taken_over(version: DatasetVersion, maintainer: User,
                                                                base: str, settings) -> None:
    run = _start(version, maintainer)
    first = run_claim(run_id=run.pk, worker="w1")
    assert first.status == RunStatus.RUNNING and first.attempt == 1 and first.worker_hostname == "w1"
    assert run_claim(run_id=run.pk, worker="w2") is None  # a duplicate message while w1 is alive
    assert job_ids_stale(RUN_JOB) == [] and job_sweep(RUN_JOB, on_stale=run_on_stale) == ([], [])
    # w1 goes silent past the timeout: the sweeper queues the run again, the next claim is attempt 2.
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert job_ids_stale(RUN_JOB) == [run.pk]
    assert job_sweep(RUN_JOB, on_stale=run_on_stale) == ([True], [])
    assert TrainingRun.objects.get(pk=run.pk).status == RunStatus.QUEUED
    second = run_claim(run_id=run.pk, worker="w2")
    assert second.attempt == 2 and second.worker_hostname == "w2"
    # w1 comes back: its writes are fenced off, and it must stop its trainer.
    with pytest.raises(ClaimLost):
        _RunWatcher(run=first, run_dir=run_dir_abspath(run=first)).write(force=True)
    with pytest.raises(ClaimLost):
        run_finish(run=first, status=RunStatus.SUCCEEDED, result={})


def test_a_redelivered_message_of_a_stale_run_claims_it_again(version: DatasetVersion, maintainer: User,
                                                               base: str) -> None:
    run = run_claim(run_id=_start(version, maintainer).pk, worker="w1")
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert run_claim(run_id=run.pk, worker="w2").attempt == 2


def test_tampered_dataset_fails_the_run_without_launching_the_trainer(version: DatasetVersion, maintainer: User,
                                                                      base: str) -> None:
    folder = dataset_version_abspath(version=version)
    arrow = next((folder / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-16] + b"\0" * 16)
    run = run_claim(run_id=_start(version, maintainer).pk, worker="w1")
    run = run_execute(run=run)
    assert run.status == RunStatus.FAILED and "no longer matches its content hash" in run.error
    assert "trainer was not launched" in run.error
    assert not (run_dir_abspath(run=run) / "trainer.log").exists()
    assert not Evaluation.objects.filter(run=run).exists()


def test_success_queues_the_evaluation_once(version: DatasetVersion, maintainer: User, base: str,
                                            django_capture_on_commit_callbacks) -> None:
    run = run_claim(run_id=_start(version, maintainer).pk, worker="w1")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = run_finish(run=run, status=RunStatus.SUCCEEDED, result={"status": "succeeded", "steps": 8,
                                                                      "final_loss": 4.2, "traceback": "x"})
    assert run.step == run.total_steps == 8 and run.last_loss == 4.2 and "traceback" not in run.result
    assert len(callbacks) == 1 and run.evaluation.status == EvaluationStatus.PENDING
    claimed = evaluation_claim(run_id=run.pk)
    assert claimed.status == EvaluationStatus.RUNNING and claimed.attempt == 1
    assert evaluation_claim(run_id=run.pk) is None


# -- evaluation ----------------------------------------------------------------------


def _summary(loss: float, em: float, chrf: float) -> dict:
    return {"loss": loss, "exact_match": em, "chrf": chrf}


def _comparison(base: dict, tuned: dict, examples: list | None = None) -> dict:
    return {"summary": {"n": 2, "base": base, "tuned": tuned, "improved": 1, "regressed": 0, "unchanged": 1},
            "examples": examples or []}


@pytest.mark.parametrize(("cases_tuned", "general_tuned", "passes", "reason"), [
    (_summary(2.0, 0.0, 10.0), _summary(3.0, 0.0, 20.0), True, "loss 3.0000 -> 2.0000"),
    (_summary(3.0, 0.5, 10.0), _summary(3.0, 0.0, 20.0), True, "exact match"),
    (_summary(3.5, 0.0, 9.0), _summary(3.0, 0.0, 20.0), False, "did not improve"),
    (_summary(2.0, 0.0, 30.0), _summary(3.0, 0.0, 15.0), False, "chrF fell by 5.00"),
    (_summary(2.0, 0.0, 30.0), _summary(3.6, 0.0, 20.0), False, "loss rose by 20.0%"),
])
def test_verdict(cases_tuned: dict, general_tuned: dict, passes: bool, reason: str) -> None:
    ok, reasons = evaluation_verdict(cases={"base": _summary(3.0, 0.0, 10.0), "tuned": cases_tuned},
                                     general={"base": _summary(3.0, 0.0, 20.0), "tuned": general_tuned})
    assert ok is passes and reason in "\n".join(reasons)


def _evaluation_running(version: DatasetVersion, maintainer: User) -> Evaluation:
    run = run_claim(run_id=_start(version, maintainer).pk, worker="w1")
    run_finish(run=run, status=RunStatus.SUCCEEDED, result={"steps": 8})
    return evaluation_claim(run_id=run.pk)


def test_an_evaluation_taken_over_can_record_neither_its_verdict_nor_its_failure(
    version: DatasetVersion, maintainer: User, base: str
) -> None:
    first = _evaluation_running(version, maintainer)
    Evaluation.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert job_sweep(EVALUATION_JOB, on_stale=evaluation_on_stale) == ([True], [])
    second = evaluation_claim(run_id=first.run_id)
    assert second is not None and second.attempt == 2
    with pytest.raises(ClaimLost):
        evaluation_fail(evaluation=first, error="the first worker woke up and crashed")
    with pytest.raises(ClaimLost):
        evaluation_record(evaluation=first, cases=_comparison(_summary(3.0, 0, 10), _summary(2.0, 0, 20)),
                          general=_comparison(_summary(3.0, 0, 20), _summary(3.0, 0, 20)))
    second.refresh_from_db()
    assert (second.status, second.attempt, second.verdict) == (EvaluationStatus.RUNNING, 2, "")


def test_blocked_evaluation_needs_permission_and_a_reason_to_override(version: DatasetVersion, maintainer: User,
                                                                      contributor: User, base: str) -> None:
    evaluation = _evaluation_running(version, maintainer)
    example = {"id": "case-1", "prompt": "p", "reference": "r", "base": {"prediction": "a", "chrf": 1.0},
               "tuned": {"prediction": "b", "chrf": 0.5}, "delta_chrf": -0.5}
    same = _summary(3.0, 0.0, 10.0)
    evaluation = evaluation_record(evaluation=evaluation, cases=_comparison(same, same, [example]),
                                   general=_comparison(same, same))
    assert evaluation.status == EvaluationStatus.BLOCKED and "did not improve" in evaluation.verdict
    assert evaluation.per_case == [example] and evaluation.base_metrics["cases"] == same
    with pytest.raises(PermissionDenied):
        evaluation_override(evaluation=evaluation, by=contributor, reason="I want it released anyway.")
    with pytest.raises(ValidationError, match="at least"):
        evaluation_override(evaluation=evaluation, by=maintainer, reason="  ok ")
    evaluation = evaluation_override(evaluation=evaluation, by=maintainer,
                                     reason="The cases were already answered well; release for the LFA fix.")
    assert evaluation.status == EvaluationStatus.OVERRIDDEN and evaluation.override_by == maintainer
    with pytest.raises(ValidationError):  # only a blocked evaluation can be overridden
        evaluation_override(evaluation=evaluation, by=maintainer, reason="Once more, with feeling.")


def test_passed_evaluation_is_recorded(version: DatasetVersion, maintainer: User, base: str) -> None:
    evaluation = _evaluation_running(version, maintainer)
    evaluation = evaluation_record(evaluation=evaluation,
                                   cases=_comparison(_summary(3.0, 0.0, 10.0), _summary(2.0, 0.0, 12.0)),
                                   general=_comparison(_summary(3.0, 0.0, 20.0), _summary(3.0, 0.0, 20.0)))
    assert evaluation.status == EvaluationStatus.PASSED and evaluation.finished_at is not None
    assert json.loads(json.dumps(evaluation.tuned_metrics))["cases_counts"]["improved"] == 1

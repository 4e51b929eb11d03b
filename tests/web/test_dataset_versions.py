"""Dataset versions: the build task's files, determinism, its claim, and tamper detection."""

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.utils import timezone
from trainer.data import available_splits, load_examples

from accounts.models import User
from curation.models import DatasetVersion, DatasetVersionStatus
from curation.selectors import dataset_version_abspath
from curation.services import (
    DatasetTampered,
    dataset_content_hash,
    dataset_split,
    dataset_version_build,
    dataset_version_transition,
    dataset_version_verify,
)
from curation.tasks import build_dataset_version

from .loop_factories import approved_batch, built_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def test_build_writes_a_dataset_the_trainer_reads(contributor: User, maintainer: User, settings) -> None:
    version = built_version(author=contributor, maintainer=maintainer)
    folder = dataset_version_abspath(version=version)
    assert version.status == DatasetVersionStatus.READY and version.built_at is not None
    assert folder == settings.ARTIFACT_ROOT / "datasets" / "plan-test" and version.path == "datasets/plan-test"
    # The trainer's own reader (tests may import it; the platform may not).
    assert available_splits(folder) == ["train", "eval"]
    train, held_out = load_examples(folder, "train"), load_examples(folder, "eval")
    assert (len(train), len(held_out)) == (version.train_rows, version.eval_rows) == (5, 3)
    by_id = {ex.id: ex for ex in train + held_out}
    math = next(ex for ex in by_id.values() if "小明有3个苹果" in ex.prompt)
    assert math.response == "3 + 5 = 8，8 − 2 = 6。小明还剩6个苹果。" and math.source == "web" and math.weight == 1.0
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest == version.manifest
    assert manifest["splits"] == {"train": 5, "eval": 3} and manifest["content_hash"] == version.content_hash
    assert {"README.md", "dataset_dict.json", "train/state.json", "eval/dataset_info.json"} <= set(manifest["files"])


def test_every_scenario_with_two_cases_is_in_eval(contributor: User, maintainer: User) -> None:
    version = built_version(author=contributor, maintainer=maintainer)
    folder = dataset_version_abspath(version=version)
    import datasets

    loaded = datasets.load_from_disk(str(folder))
    train_scenarios = set(loaded["train"]["scenario"])
    eval_scenarios = set(loaded["eval"]["scenario"])
    # 3 math, 2 SQL, 2 Python cases; one summary case stays in train.
    assert eval_scenarios == {"小学数学应用题", "SQL生成", "Python code generation"}
    assert train_scenarios == eval_scenarios | {"文本摘要"}
    assert loaded["train"][0]["case_url"].startswith("http") and "/cases/" in loaded["train"][0]["case_url"]


def test_dataset_card_has_yaml_metadata(contributor: User, maintainer: User) -> None:
    version = built_version(author=contributor, maintainer=maintainer)
    text = (dataset_version_abspath(version=version) / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == "cc-by-4.0" and front["language"] == ["en", "zh"]
    assert front["size_categories"] == ["n<1K"]
    assert front["dataset_info"]["splits"] == [
        {"name": "train", "num_examples": 5},
        {"name": "eval", "num_examples": 3},
    ]
    assert front["cotrain"]["batch"] == "plan-test" and front["cotrain"]["content_hash"] == version.content_hash
    assert front["cotrain"]["approved_by"] == "maint"
    assert "| SQL生成 | 1 | 1 |" in text


def test_building_twice_gives_the_same_hash(contributor: User, maintainer: User, settings, tmp_path: Path) -> None:
    version = built_version(author=contributor, maintainer=maintainer)
    first_hash, first_files = version.content_hash, version.manifest["files"]
    # Build the same batch again from scratch, into another artifact root.
    settings.ARTIFACT_ROOT = tmp_path / "second"
    # A test-only shortcut: no service un-readies a version, by design.
    DatasetVersion.objects.filter(pk=version.pk).update(status=DatasetVersionStatus.FAILED)
    rebuilt = dataset_version_build(version_id=version.pk)
    assert rebuilt.content_hash == first_hash and len(first_hash) == 64
    # The rows' files are byte-identical too; only state.json carries a random fingerprint.
    differing = {name for name, digest in rebuilt.manifest["files"].items() if first_files[name] != digest}
    assert differing <= {"train/state.json", "eval/state.json"}


def test_split_and_hash_are_pure_functions_of_the_rows() -> None:
    rows = [
        {"id": f"case-{i}", "scenario": s, "prompt": f"p{i}", "response": "r", "weight": 1.0}
        for i, s in enumerate(["a"] * 10 + ["b"] * 2 + ["c"])
    ]
    splits = dataset_split(rows=rows)
    assert dataset_split(rows=list(reversed(rows))) == splits
    eval_scenarios = [r["scenario"] for r in splits["eval"]]
    assert (eval_scenarios.count("a"), eval_scenarios.count("b"), eval_scenarios.count("c")) == (2, 1, 0)
    assert dataset_content_hash(splits=splits) == dataset_content_hash(splits=dataset_split(rows=rows[::-1]))
    changed = [dict(rows[0], response="other"), *rows[1:]]
    assert dataset_content_hash(splits=dataset_split(rows=changed)) != dataset_content_hash(splits=splits)
    # No scenario with two cases: one row still goes to eval.
    singles = dataset_split(rows=[dict(r, scenario=r["id"]) for r in rows[:3]])
    assert (len(singles["train"]), len(singles["eval"])) == (2, 1)


def test_task_is_safe_to_run_twice(contributor: User, maintainer: User) -> None:
    batch = approved_batch(author=contributor, maintainer=maintainer)
    version = DatasetVersion.objects.get(batch=batch)
    result = build_dataset_version.run(version.pk)
    version.refresh_from_db()
    assert result == {"version_id": version.pk, "status": "ready", "content_hash": version.content_hash}
    built_at, readme = version.built_at, dataset_version_abspath(version=version) / "README.md"
    mtime = readme.stat().st_mtime_ns
    # A redelivered message finds the version ready and leaves it, files and all.
    assert build_dataset_version.run(version.pk)["content_hash"] == version.content_hash
    version.refresh_from_db()
    assert version.built_at == built_at and readme.stat().st_mtime_ns == mtime


def test_a_build_that_died_midway_is_rebuilt(contributor: User, maintainer: User, settings) -> None:
    batch = approved_batch(author=contributor, maintainer=maintainer)
    version = DatasetVersion.objects.get(batch=batch)
    dataset_version_transition(version=version, to_status=DatasetVersionStatus.BUILDING)
    # Its worker died: the claim is older than the build timeout (a fresh one is a live build, left alone).
    late = timezone.now() - timedelta(seconds=settings.DATASET_BUILD_TIMEOUT_SECONDS + 1)
    DatasetVersion.objects.filter(pk=version.pk).update(claimed_at=late)
    # What the dead worker left: a half-written folder at the final path.
    stale = settings.ARTIFACT_ROOT / "datasets" / batch.name
    stale.mkdir(parents=True)
    (stale / "junk.arrow").write_bytes(b"partial")
    version = dataset_version_build(version_id=version.pk)
    assert version.status == DatasetVersionStatus.READY and not (stale / "junk.arrow").exists()
    dataset_version_verify(version=version)
    assert not [p for p in (settings.ARTIFACT_ROOT / "datasets").iterdir() if p.name.startswith(".")]


def test_a_failed_build_is_recorded(contributor: User, maintainer: User, monkeypatch) -> None:
    from curation.services import dataset_versions

    batch = approved_batch(author=contributor, maintainer=maintainer)
    version = DatasetVersion.objects.get(batch=batch)

    def broken(**kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(dataset_versions, "_write_dataset", broken)
    with pytest.raises(RuntimeError):
        dataset_version_build(version_id=version.pk)
    version.refresh_from_db()
    assert version.status == DatasetVersionStatus.FAILED and "disk on fire" in version.error
    monkeypatch.undo()
    assert dataset_version_build(version_id=version.pk).status == DatasetVersionStatus.READY


def test_verify_passes_on_an_untouched_dataset(contributor: User, maintainer: User) -> None:
    dataset_version_verify(version=built_version(author=contributor, maintainer=maintainer))


@pytest.mark.parametrize("tamper", ["edit_arrow", "delete_file", "edit_card", "rewrite_manifest"])
def test_verify_detects_a_tampered_dataset(contributor: User, maintainer: User, tamper: str) -> None:
    version = built_version(author=contributor, maintainer=maintainer)
    folder = dataset_version_abspath(version=version)
    arrow = next(path for path in folder.rglob("*.arrow") if "小明".encode() in path.read_bytes())
    if tamper == "edit_arrow":
        data = bytearray(arrow.read_bytes())
        index = data.find("小明".encode())
        data[index : index + 6] = "小红".encode()
        arrow.write_bytes(bytes(data))
    elif tamper == "delete_file":
        shutil.rmtree(folder / "eval")
    elif tamper == "edit_card":
        card = folder / "README.md"
        card.write_text(card.read_text(encoding="utf-8") + "\nextra\n", encoding="utf-8")
    else:
        # Change a file and rewrite manifest.json to match: the database's copy still catches it.
        (folder / "README.md").write_text("forged", encoding="utf-8")
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest["files"]["README.md"] = "0" * 64
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(DatasetTampered, match=version.content_hash):
        dataset_version_verify(version=version)


def test_verify_refuses_a_version_that_is_not_ready(contributor: User, maintainer: User) -> None:
    batch = approved_batch(author=contributor, maintainer=maintainer)
    with pytest.raises(ValidationError, match="not ready"):
        dataset_version_verify(version=DatasetVersion.objects.get(batch=batch))


def test_the_build_task_runs_on_the_default_queue() -> None:
    from worker.celery_app import app

    # Loaded by curation's AppConfig, so a web process sends to the configured broker.
    assert build_dataset_version.app is app
    assert app.amqp.router.route({}, build_dataset_version.name)["queue"].name == "default"

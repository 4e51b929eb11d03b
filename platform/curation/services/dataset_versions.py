"""Dataset versions: build the immutable dataset of an approved batch, and check it before use.

Layout of `ARTIFACT_ROOT/datasets/<batch name>/`: a `datasets` DatasetDict saved
with `save_to_disk` (splits `train` and `eval`), `README.md` (the dataset card) and
`manifest.json` (row counts, the content hash, a sha256 per file).

The content hash is a sha256 over a canonical JSON serialization of the rows, not
over the arrow files: `save_to_disk` writes a random fingerprint into state.json,
so the files' bytes differ between two builds of the same rows while the content
hash does not. The per-file hashes, recorded in the database as well as on disk,
catch any later edit of the files.
"""

import hashlib
import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.template.loader import render_to_string

from accounts.models import User
from cotrain_site.jobs import ClaimLost, Heartbeat, job_claim, job_lock, job_retry, job_send
from curation.models import BenchmarkSet, DatasetBatch, DatasetVersion, DatasetVersionStatus
from curation.pipeline import EVAL_FRACTION, FILTERS, Curated, Progress, canonical, curate, split_rows
from curation.selectors import (
    batch_case_ids,
    curation_eval_items,
    dataset_rows_for_batch,
    dataset_version_abspath,
)
from curation.services.batches import APPROVE_PERMISSION
from curation.services.transitions import BUILD_JOB, dataset_version_transition

SPLITS = ("train", "eval")
# dtype "list" is a list of strings (`datasets.List(Value("string"))`).
COLUMNS = {
    "id": "string",
    "prompt": "string",
    "response": "string",
    "source": "string",
    "weight": "float64",
    "scenario": "string",
    "language": "string",
    "license": "string",
    "case_url": "string",
    # Provenance: where the row came from and what the curation did to it (`curation.pipeline`).
    "case_id": "int64",
    "source_url": "string",
    "cluster_id": "string",
    "scrubbed": "list",
    "filters": "list",
    "flags": "list",
}
MANIFEST = "manifest.json"
HF_LANGUAGES = {"zh": ["zh"], "en": ["en"], "mixed": ["zh", "en"]}


class DatasetTampered(Exception):
    """The files of a dataset version no longer match what was built (its manifest and content hash)."""


def dataset_content_hash(*, splits: dict[str, list[dict[str, Any]]]) -> str:
    """sha256 of the rows of every split, serialized canonically (keys sorted, UTF-8, no spaces)."""
    return hashlib.sha256(canonical({name: splits[name] for name in sorted(splits)})).hexdigest()


Rows = list[dict[str, Any]]


def dataset_split(*, rows: Rows, eval_fraction: float = EVAL_FRACTION) -> dict[str, Rows]:
    """Deterministic train/eval split as a build makes it (`curation.pipeline.split_rows`): all the rows of
    one case (its example pairs) and of one cluster go to the same side."""
    return split_rows(rows=rows, eval_fraction=eval_fraction)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): _file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M"


def _feature(dtype: str) -> dict[str, Any]:
    return {"sequence": "string"} if dtype == "list" else {"dtype": dtype}


def _dataset_card(*, batch: DatasetBatch, curated: Curated, summary: dict[str, Any], content_hash: str) -> str:
    splits = curated.splits
    rows = [row for name in SPLITS for row in splits[name]]
    licenses = sorted({row["license"].lower() for row in rows})
    languages = sorted({code for row in rows for code in HF_LANGUAGES.get(row["language"], [])})
    meta = {
        "pretty_name": f"cotrain {batch.name}",
        "license": licenses[0] if len(licenses) == 1 else "other",
        "language": languages,
        "size_categories": [_size_category(len(rows))],
        "task_categories": ["text-generation"],
        "tags": ["yuan2", "co-training", "cotrain"],
        "dataset_info": {
            "features": [{"name": name, **_feature(dtype)} for name, dtype in COLUMNS.items()],
            "splits": [{"name": name, "num_examples": len(splits[name])} for name in SPLITS],
        },
        "cotrain": {
            "batch": batch.name,
            "batch_id": batch.pk,
            "approved_at": batch.approved_at.isoformat() if batch.approved_at else None,
            "approved_by": batch.approved_by.username if batch.approved_by else None,
            "content_hash": content_hash,
        },
    }
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for name in SPLITS:
        for row in splits[name]:
            counts[row["scenario"]][name] += 1
    context = {
        "front_matter": yaml.safe_dump(meta, allow_unicode=True, sort_keys=False).strip(),
        "batch": batch,
        "train_rows": len(splits["train"]),
        "eval_rows": len(splits["eval"]),
        "content_hash": content_hash,
        "licenses": licenses,
        "scenarios": [(s, c["train"], c["eval"]) for s, c in sorted(counts.items())],
        "eval_percent": round(100 * EVAL_FRACTION),
        "replaced": sorted(curated.replaced.items()),
        "dropped": curated.dropped,
        "curation": summary,
    }
    return render_to_string("curation/dataset_card.md", context)


def dataset_curate(*, batch: DatasetBatch, progress: Progress | None = None) -> Curated:
    """The batch's rows through every filter (`curation.pipeline`), as a build of it now would write them."""
    return _curate(batch=batch, rows=dataset_rows_for_batch(batch=batch), case_ids=batch_case_ids(batch=batch),
                   progress=progress)


def _curate(*, batch: DatasetBatch, rows: Rows, case_ids: list[int], progress: Progress | None = None) -> Curated:
    curated = curate(rows=rows, eval_items=curation_eval_items(), keep_per_cluster=settings.DATASET_NEAR_DUP_KEEP,
                     progress=progress)
    # Every case of a batch has a row, so the cases without one are exactly those withdrawn when the rows were read.
    curated.withdrawn_cases = sorted(set(case_ids) - {row["case_id"] for row in rows})
    return curated


# A draft's preview is computed once per content: the review page is reloaded far more often than it changes.
PREVIEW_CACHE_SECONDS = 3600


def batch_curation_preview(*, batch: DatasetBatch) -> dict[str, Any]:
    """What building the batch now would drop, change and flag (the manifest's `curation`), for its review page."""
    rows, case_ids = dataset_rows_for_batch(batch=batch), batch_case_ids(batch=batch)
    key = "curation-preview:" + hashlib.sha256(canonical([
        rows, case_ids, list(BenchmarkSet.objects.filter(active=True).values_list("sha256")),
        settings.DATASET_NEAR_DUP_KEEP, str(settings.GENERAL_EVAL_PATH)])).hexdigest()
    summary = cache.get(key)
    if summary is None:
        summary = _curate(batch=batch, rows=rows, case_ids=case_ids).summary()
        cache.set(key, summary, PREVIEW_CACHE_SECONDS)
    return summary


def dataset_curated_hash(*, curated: Curated) -> str:
    """The content hash a dataset version of these curated rows has."""
    return dataset_content_hash(splits={name: [_stored(row) for row in curated.splits[name]] for name in SPLITS})


def _write_dataset(*, folder: Path, batch: DatasetBatch, curated: Curated) -> dict[str, Any]:
    # Imported here: `datasets` is slow to import and only the builder (a worker) needs it.
    import datasets

    datasets.disable_progress_bars()
    splits = curated.splits
    features = datasets.Features({
        name: datasets.List(datasets.Value("string")) if dtype == "list" else datasets.Value(dtype)
        for name, dtype in COLUMNS.items()
    })
    dataset = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict({col: [row[col] for row in splits[name]] for col in COLUMNS}, features)
            for name in SPLITS
        }
    )
    dataset.save_to_disk(str(folder))
    content_hash = dataset_curated_hash(curated=curated)
    summary = curated.summary()
    (folder / "README.md").write_text(
        _dataset_card(batch=batch, curated=curated, summary=summary, content_hash=content_hash), encoding="utf-8"
    )
    manifest = {
        "name": batch.name,
        "format": "datasets.DatasetDict.save_to_disk",
        "batch": {"id": batch.pk, "name": batch.name},
        "columns": list(COLUMNS),
        "splits": {name: len(splits[name]) for name in SPLITS},
        "scenarios": dict(sorted(Counter(row["scenario"] for name in SPLITS for row in splits[name]).items())),
        "content_hash": content_hash,
        # What the scrubber replaced, per kind of personal data (rows hold `<PHONE>`, `<ID>`, ... instead).
        "personal_data_replaced": dict(sorted(curated.replaced.items())),
        # Per filter: rows dropped, changed and flagged, and why; then every dropped row.
        "curation": summary,
        # Cases of the batch left out because their authors withdrew them before the build.
        "withdrawn_cases": curated.withdrawn_cases,
        "content_hash_method": "sha256 of canonical JSON {split: [rows sorted by id]}, keys sorted, UTF-8",
        "files": _file_hashes(folder),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the dataset stores it: exactly its columns (the content hash is over these)."""
    return {col: row[col] for col in COLUMNS}


def _claim(*, version_id: int) -> DatasetVersion | None:
    """Take the next build attempt, or None: ready, or a live build holds it (a duplicate message)."""
    return job_claim(BUILD_JOB, pk=version_id, claim=lambda version: dataset_version_transition(
        version=version, to_status=DatasetVersionStatus.BUILDING))


@transaction.atomic
def _install(*, version_id: int, attempt: int, built: Path, manifest: dict[str, Any]) -> DatasetVersion:
    """Move the built folder into place and record it, under the row lock, if this attempt still owns the build."""
    locked = job_lock(BUILD_JOB, pk=version_id, attempt=attempt)
    relative = f"datasets/{locked.batch.name}"
    final = Path(settings.ARTIFACT_ROOT) / relative
    if final.exists():
        # Left by an attempt that died between the move and the commit; this version is not ready, so nothing uses it.
        shutil.rmtree(final)
    built.rename(final)
    locked.path, locked.manifest, locked.content_hash = relative, manifest, manifest["content_hash"]
    locked.train_rows, locked.eval_rows = manifest["splits"]["train"], manifest["splits"]["eval"]
    locked.progress = _progress("ready", 1, 1)
    locked.save(update_fields=["path", "manifest", "content_hash", "train_rows", "eval_rows", "progress"])
    return dataset_version_transition(version=locked, to_status=DatasetVersionStatus.READY)


@transaction.atomic
def _fail(*, version_id: int, attempt: int, error: str) -> DatasetVersion:
    locked = job_lock(BUILD_JOB, pk=version_id, attempt=attempt)
    return dataset_version_transition(version=locked, to_status=DatasetVersionStatus.FAILED, error=error[:2000])


def _remove_leftovers(*, root: Path, batch: DatasetBatch, keep: Path) -> None:
    # A SIGKILLed build never reached its `finally`; an older build still running has lost its claim anyway.
    for leftover in root.glob(f".{batch.name}.building-*"):
        if leftover != keep:
            shutil.rmtree(leftover, ignore_errors=True)


# A build reports where it is at most this often (its heartbeat, so a long build is never taken for dead).
PROGRESS_SECONDS = 1.0


def _progress(stage: str, done: int, total: int) -> dict[str, Any]:
    return {"stage": stage, "done": done, "total": total}


def _dropped_by_filter(curated: Curated) -> dict[str, int]:
    return {name: curated.stats[name].dropped for name in FILTERS if curated.stats[name].dropped}


def dataset_version_build(*, version_id: int) -> DatasetVersion:
    """Build the version's files (the task's body); safe to run twice, and after a build killed mid-way.

    A ready version, or one a live build holds, is returned as it is. Each attempt
    builds from scratch into its own hidden folder, and only the newest attempt may
    move it into place (under the row lock) or record a failure.
    """
    version = _claim(version_id=version_id)
    if version is None:
        return DatasetVersion.objects.get(pk=version_id)
    attempt = version.attempt
    batch = DatasetBatch.objects.select_related("approved_by").get(pk=version.batch_id)
    root = Path(settings.ARTIFACT_ROOT) / "datasets"
    building = root / f".{batch.name}.building-{attempt}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(root=root, batch=batch, keep=building)
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir()
        beat = Heartbeat(BUILD_JOB, pk=version_id, attempt=attempt, every_s=PROGRESS_SECONDS)
        curated = dataset_curate(batch=batch, progress=lambda stage, done, total: beat(
            progress=_progress(stage, done, total)))
        if not curated.splits["train"]:
            raise ValueError(f"No train rows are left after curation ({len(curated.dropped)} dropped: "
                             + ", ".join(f"{n} {name}" for name, n in _dropped_by_filter(curated).items()) + ").")
        beat(force=True, progress=_progress("writing", 0, 1))
        manifest = _write_dataset(folder=building, batch=batch, curated=curated)
        return _install(version_id=version_id, attempt=attempt, built=building, manifest=manifest)
    except ClaimLost:
        return DatasetVersion.objects.get(pk=version_id)
    except Exception as exc:
        try:
            _fail(version_id=version_id, attempt=attempt, error=f"{exc!r}")
        except ClaimLost:
            return DatasetVersion.objects.get(pk=version_id)  # a newer attempt owns it: its outcome counts
        raise
    finally:
        shutil.rmtree(building, ignore_errors=True)


def dataset_version_on_stale(version: DatasetVersion) -> bool:
    """The sweeper's move for a build whose worker died: pending again, and sent."""
    job_send(BUILD_JOB, dataset_version_transition(
        version=version, to_status=DatasetVersionStatus.PENDING,
        error=f"Build attempt {version.attempt} stopped without finishing; built again."))
    return True


def dataset_version_retry(*, version: DatasetVersion, by: User | None) -> DatasetVersion:
    """A maintainer's retry of a failed build (a permission error that outlasted the task's retries, ...)."""
    if by is None or not by.is_active or not by.has_perm(APPROVE_PERMISSION):
        raise PermissionDenied("Only maintainers can retry dataset builds.")
    return job_retry(BUILD_JOB, version, failed=DatasetVersionStatus.FAILED, label=f"Dataset version {version.pk}",
                     noun="build", requeue=lambda locked, last_error: dataset_version_transition(
                         version=locked, to_status=DatasetVersionStatus.PENDING,
                         error=f"Retried by {by.username}; last error: {last_error}"[:2000]))


def dataset_version_verify(*, version: DatasetVersion) -> None:
    """Refuse a dataset whose files changed since it was built: raises `DatasetTampered`.

    Checks every file against the per-file hashes recorded in the database (not
    only on disk, where they could be edited together with the files), then
    reloads the rows and recomputes the content hash.
    """
    version = DatasetVersion.objects.get(pk=version.pk)
    if version.status != DatasetVersionStatus.READY:
        raise ValidationError(f"Dataset version {version.pk} is {version.status}, not ready.", code="not_ready")
    folder = dataset_version_abspath(version=version)
    expected: dict[str, str] = version.manifest.get("files", {})
    problems = [f"{name} is missing" for name in expected if not (folder / name).is_file()]
    problems += [f"{name} changed" for name, digest in expected.items()
                 if (folder / name).is_file() and _file_sha256(folder / name) != digest]
    try:
        on_disk = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        on_disk = None
    if on_disk != version.manifest:
        problems.append(f"{MANIFEST} differs from the recorded manifest")
    if not problems:
        problems += _content_problems(folder=folder, content_hash=version.content_hash)
    if not expected or problems:
        raise DatasetTampered(
            f"Dataset {version.path} no longer matches content hash {version.content_hash}: "
            + ("; ".join(problems) or "no files recorded")
        )


def _content_problems(*, folder: Path, content_hash: str) -> list[str]:
    import datasets  # slow to import; only workers verifying a dataset need it (see _write_dataset)

    try:
        loaded = datasets.load_from_disk(str(folder))
        splits = {name: loaded[name].to_list() for name in SPLITS}
    except Exception as exc:  # datasets raises several types for damaged folders
        return [f"cannot load ({type(exc).__name__}: {exc})"]
    actual = dataset_content_hash(splits=splits)
    return [] if actual == content_hash else [f"the rows hash to {actual}"]

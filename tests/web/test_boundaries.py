"""The absences docs/ARCHITECTURE.md promises: the trainer imports no Django side, the platform no torch
(of the trainer, only `trainer.contract`, the run folder's names), and each platform app imports only the
apps before it in the flow."""

import ast
from pathlib import Path

from .conftest import PLATFORM_DIR, REPO_ROOT, run_manage

APPS = sorted(path.name for path in PLATFORM_DIR.iterdir() if (path / "apps.py").exists())


def _imported(folder: Path) -> dict[str, set[str]]:
    """What each file under `folder` imports, by full name (absolute imports only; `from a import b` is a.b)."""
    found = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[str(path.relative_to(REPO_ROOT))] = names
    return found


def _imported_top_names(folder: Path) -> dict[str, set[str]]:
    """Top-level module names each file under `folder` imports."""
    return {path: {name.split(".")[0] for name in names} for path, names in _imported(folder).items()}


def test_trainer_imports_nothing_of_django_celery_or_the_platform() -> None:
    forbidden = {"django", "rest_framework", "celery", "kombu", "worker", "cotrain_site", *APPS}
    offenders = {path: names & forbidden for path, names in _imported_top_names(REPO_ROOT / "trainer").items()}
    assert not {path: names for path, names in offenders.items() if names}


#: The one trainer module the platform and the worker may import: names and exit codes, standard library only.
TRAINER_CONTRACT = "trainer.contract"


def test_platform_and_worker_import_only_the_trainers_contract() -> None:
    used = {path: {name for name in names if name.split(".")[0] == "trainer"}
            for folder in (*(PLATFORM_DIR / app for app in APPS), REPO_ROOT / "worker")
            for path, names in _imported(folder).items()}
    # `from trainer.contract import X` is trainer.contract.X: fine too.
    outside = {path: {name for name in names if not f"{name}.".startswith(f"{TRAINER_CONTRACT}.")}
               for path, names in used.items()}
    assert {path: names for path, names in outside.items() if names} == {}
    assert any(used.values()), "a stale promise: nothing imports trainer.contract"


def test_platform_and_worker_load_without_torch(tmp_path: Path) -> None:
    # At run time, not only in the source: importing the rest of `trainer` would pull torch in too.
    modules = [
        str(path.relative_to(root).with_suffix("")).replace("/", ".").removesuffix(".__init__")
        for root, folders in ((PLATFORM_DIR, APPS), (REPO_ROOT, ["worker"]))
        for folder in folders
        for path in (root / folder).rglob("*.py")
    ]
    code = (
        f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'trainer')))"
    )
    result = run_manage("shell", "--no-imports", "-c", code, env={"COTRAIN_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert len(modules) > 40 and result.stdout.strip() == str(["trainer", TRAINER_CONTRACT]), result.stdout


# The flow, written down once: intake -> curation -> training -> releases, with ghsync
# (GitHub in and out: requests in, release reports out) and loop (the main job) on top.
# Each app may import the apps listed for it, and `cotrain_site` (the project's shared
# plumbing); an edge missing here is a layering break, an edge here that no code uses
# is a stale promise. Both fail.
ALLOWED_IMPORTS = {
    "accounts": set(),
    "intake": {"accounts"},
    "curation": {"accounts", "intake"},
    "training": {"accounts", "intake", "curation"},
    "releases": {"accounts", "intake", "curation", "training"},
    "ghsync": {"accounts", "intake", "curation", "releases"},
    "loop": {"accounts", "intake", "curation", "training", "releases"},
}


def _app_imports(app: str) -> dict[str, set[str]]:
    """Other apps each of `app`'s modules imports, migrations aside (Django writes those)."""
    found = _imported_top_names(PLATFORM_DIR / app)
    return {path: (names & set(APPS)) - {app} for path, names in found.items() if "/migrations/" not in path}


def test_every_app_imports_only_the_apps_before_it_in_the_flow() -> None:
    assert set(ALLOWED_IMPORTS) == set(APPS), "a new app needs its line in ALLOWED_IMPORTS"
    breaks = {path: names - ALLOWED_IMPORTS[app] for app in APPS for path, names in _app_imports(app).items()
              if names - ALLOWED_IMPORTS[app]}
    assert not breaks, breaks
    used = {app: set().union(*_app_imports(app).values()) for app in APPS}
    assert used == ALLOWED_IMPORTS


def test_the_shared_plumbing_imports_no_app() -> None:
    offenders = {path: names & set(APPS) for path, names in _imported_top_names(PLATFORM_DIR / "cotrain_site").items()}
    assert not {path: names for path, names in offenders.items() if names}


#: The curation modules (detectors and filters) are pure: a bench or a notebook runs them without Django.
PURE_MODULES = ["intake.pii", "intake.neardup", "curation.quality", "curation.decontam", "curation.pipeline"]


def test_the_curation_modules_load_without_django() -> None:
    import subprocess
    import sys

    code = (f"import importlib, sys; sys.path[:0] = [{str(PLATFORM_DIR)!r}]; "
            f"[importlib.import_module(m) for m in {PURE_MODULES!r}]; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'django', 'rest_framework', 'celery', 'torch'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

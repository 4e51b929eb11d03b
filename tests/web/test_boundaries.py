"""The absences docs/ARCHITECTURE.md promises: the trainer imports no Django side, the platform no torch,
and each platform app imports only the apps before it in the flow."""

import ast
from pathlib import Path

from .conftest import PLATFORM_DIR, REPO_ROOT, run_manage

APPS = sorted(path.name for path in PLATFORM_DIR.iterdir() if (path / "apps.py").exists())


def _imported_top_names(folder: Path) -> dict[str, set[str]]:
    """Top-level module names each file under `folder` imports (absolute imports only)."""
    found = {}
    for path in folder.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO_ROOT))] = names
    return found


def test_trainer_imports_nothing_of_django_celery_or_the_platform() -> None:
    forbidden = {"django", "rest_framework", "celery", "kombu", "worker", "cotrain_site", *APPS}
    offenders = {path: names & forbidden for path, names in _imported_top_names(REPO_ROOT / "trainer").items()}
    assert not {path: names for path, names in offenders.items() if names}


def test_platform_and_worker_load_without_torch(tmp_path: Path) -> None:
    # At run time, not only in the source: importing `trainer` would pull torch in too.
    modules = [
        str(path.relative_to(root).with_suffix("")).replace("/", ".").removesuffix(".__init__")
        for root, folders in ((PLATFORM_DIR, APPS), (REPO_ROOT, ["worker"]))
        for folder in folders
        for path in (root / folder).rglob("*.py")
    ]
    code = (
        f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'trainer'}))"
    )
    result = run_manage("shell", "--no-imports", "-c", code, env={"COTRAIN_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert len(modules) > 40 and result.stdout.strip() == "[]", result.stdout


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

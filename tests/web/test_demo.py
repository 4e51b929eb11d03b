"""The main job on the embedded default (SQLite, no Redis): `manage.py demo --no-serve`."""

import re
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, run_manage

pytestmark = pytest.mark.slow


def test_demo_sets_up_sqlite_prints_working_credentials_and_reruns(tmp_path: Path) -> None:
    env = {"COTRAIN_VAR_DIR": str(tmp_path)}
    first = run_manage("demo", "--no-serve", env=env)
    assert first.returncode == 0, first.stderr
    assert "sample cases: 20 loaded" in first.stdout
    password = re.search(r"username maintainer\s+password (\S+)", first.stdout).group(1)
    check = (
        "from django.contrib.auth import authenticate; from intake.models import FeedbackCase; "
        f"u = authenticate(username='maintainer', password='{password}'); "
        "print(u is not None and u.has_perm('intake.triage_feedbackcase'), FeedbackCase.objects.count())"
    )
    result = run_manage("shell", "--no-imports", "-c", check, env=env)
    assert result.stdout.split() == ["True", "20"], result.stderr
    _assert_readme_describes(first.stdout)
    again = run_manage("demo", "--no-serve", env=env)
    assert "0 loaded, 20 already present" in again.stdout
    assert (tmp_path / "cotrain.sqlite3").exists()


def _assert_readme_describes(demo_stdout: str) -> None:
    """The README's quick start: exactly `make demo` and `make test`, and what the demo prints."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", quick_start, re.S)[0].splitlines()
    assert [line.split("#")[0].strip() for line in commands] == ["make demo", "make test"]
    assert re.search(r"^demo:.*\n\t\$\(PY\) manage.py demo$", (REPO_ROOT / "Makefile").read_text(), re.M)
    shown = re.findall(r"```text\n(.*?)```", quick_start, re.S)[0].splitlines()
    printed = [line.strip() for line in demo_stdout.splitlines()]
    assert shown and shown[-1].endswith("password <printed here>")
    for line in shown[:-1]:
        assert line.strip() in printed, line
    assert any(line.startswith(shown[-1].strip().removesuffix("<printed here>")) for line in printed)
    assert "20 bundled sample cases" in quick_start and "sample cases: 20 loaded" in demo_stdout

"""The main job on the embedded default (SQLite, no Redis): `manage.py demo --no-serve`."""

import re
from pathlib import Path

import pytest

from .conftest import run_manage

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
    again = run_manage("demo", "--no-serve", env=env)
    assert "0 loaded, 20 already present" in again.stdout
    assert (tmp_path / "cotrain.sqlite3").exists()

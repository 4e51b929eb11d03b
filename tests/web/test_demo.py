"""The main job on the embedded default (SQLite, filesystem broker, no Redis): `manage.py demo --no-serve`.

One run of the whole loop as a newcomer gets it: a fresh database and var/, the
demo base model built from the bundled text, a real Celery worker subprocess,
training, evaluation and a release whose files are checked here.
"""

import hashlib
import re
import time
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, run_manage

pytestmark = pytest.mark.slow
BUNDLED_CASES = 54


def test_demo_runs_the_loop_to_a_release_on_sqlite_and_reruns(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "COTRAIN_VAR_DIR": str(tmp_path / "var"),
        "COTRAIN_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
    }
    started = time.monotonic()
    first = run_manage("demo", "--no-serve", env=env, timeout=1200)
    elapsed = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert f"sample cases: {BUNDLED_CASES} loaded, 0 already present" in out
    assert re.search(r"^batch demo-1: \d+ cases in \d+ scenarios, approved by maintainer$", out, re.M)
    assert re.search(r"^  step +\d+/400  loss \d", out, re.M), "no training progress was shown"
    assert re.search(r"^evaluation: (passed|blocked)$", out, re.M)
    tag = re.search(r"^release: (\S+) published$", out, re.M).group(1)
    assert tag == "demo-1-run-1"
    print(f"manage.py demo --no-serve took {elapsed:.0f} s")  # shown with -s; the README says "a few minutes"

    release = tmp_path / "artifacts" / "releases" / tag
    _assert_files_match_sha256sums(release, out)
    _assert_checkpoint_loads(release / "merged")
    _assert_credentials_work(out, env)
    _assert_readme_describes(out)

    # A second start finds nothing new: no crash, no second run, the release is shown again.
    again = run_manage("demo", "--no-serve", env=env, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"sample cases: 0 loaded, {BUNDLED_CASES} already present" in again.stdout
    assert "nothing new to train" in again.stdout and "training:" not in again.stdout
    assert f"release:    http://127.0.0.1:8000/releases/{tag}/" in again.stdout


def _assert_files_match_sha256sums(release: Path, demo_stdout: str) -> None:
    listed = dict(line.split("  ", 1)[::-1] for line in (release / "SHA256SUMS").read_text().splitlines())
    files = sorted(p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file())
    assert set(files) == set(listed) | {"SHA256SUMS"}
    assert "merged/model.safetensors" in listed and "README.md" in listed
    for name, digest in listed.items():
        assert hashlib.sha256((release / name).read_bytes()).hexdigest() == digest, name
        assert re.search(rf"^    {re.escape(name)} +[\d,]+ bytes$", demo_stdout, re.M), f"{name} not printed"


def _assert_checkpoint_loads(folder: Path) -> None:
    import torch
    import trainer

    model = trainer.load_model(folder)
    tokenizer = trainer.load_tokenizer(folder)
    prompt = "把日期改写成 ISO 8601 格式（YYYY-MM-DD）：2023年3月8日"
    ids = torch.tensor([[*tokenizer.encode(prompt), tokenizer.sep_id]])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape[:2] == ids.shape and torch.isfinite(logits).all()


def _assert_credentials_work(demo_stdout: str, env: dict[str, str]) -> None:
    password = re.search(r"username maintainer\s+password (\S+)", demo_stdout).group(1)
    check = (
        "from django.contrib.auth import authenticate; from releases.models import Release; "
        f"u = authenticate(username='maintainer', password='{password}'); "
        "print(u is not None and u.has_perm('releases.publish_release'), Release.objects.count())"
    )
    result = run_manage("shell", "--no-imports", "-c", check, env=env)
    assert result.stdout.split() == ["True", "1"], result.stderr


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
    assert f"{BUNDLED_CASES} bundled" in quick_start

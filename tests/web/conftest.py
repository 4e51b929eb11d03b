"""Web tests: Django with PostgreSQL (DATABASE_URL, default the local server) and Redis.

The SQLite default is covered by tests that run manage.py in a subprocess with no
DATABASE_URL (test_foundation.py, test_demo.py).
"""

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_DIR = REPO_ROOT / "platform"
if str(PLATFORM_DIR) not in sys.path:
    sys.path.append(str(PLATFORM_DIR))

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cotrain")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ["DJANGO_SETTINGS_MODULE"] = "cotrain_site.settings.test"

import django  # noqa: E402

django.setup()

from django.core.cache import cache  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import User  # noqa: E402
from accounts.services import user_create, user_make_maintainer  # noqa: E402
from intake.models import FeedbackCase  # noqa: E402
from intake.services import CaseInput, case_create  # noqa: E402

PASSWORD = "correct-horse-battery-staple-9"

# A real request from the co-training plan's style: scenario, input, bad output, expected output.
MATH_CASE = CaseInput(
    scenario="小学数学应用题",
    prompt="小明有3个苹果，又买了5个，送给同学2个，还剩几个？",
    bad_output="小明还剩10个苹果。",
    expected_output="3 + 5 = 8，8 − 2 = 6。小明还剩6个苹果。",
    language="zh",
    tags=("math",),
    model_version="Yuan2-2B-Mars-hf",
    license_consent=True,
)


def run_manage(*args: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a fresh process (a clean environment unless `env` adds to it)."""
    # No DATABASE_URL, REDIS_URL or CELERY_*: the child gets the embedded default unless `env` says otherwise.
    dropped = ("DJANGO_", "DATABASE_", "REDIS_", "CELERY_")
    base = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=REPO_ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    # Rate-limit counters live in the cache (Redis db 15 here); each test starts at zero.
    cache.clear()
    yield


@pytest.fixture
def contributor(db: None) -> User:
    return user_create(username="li_ming", password=PASSWORD, email="li@example.org")


@pytest.fixture
def other_contributor(db: None) -> User:
    return user_create(username="dev_alice", password=PASSWORD)


@pytest.fixture
def maintainer(db: None) -> User:
    return user_make_maintainer(user=user_create(username="maint", password=PASSWORD))


@pytest.fixture
def client_for() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def make_case(contributor: User) -> Callable[..., FeedbackCase]:
    def make(author: User | None = None, **changes: object) -> FeedbackCase:
        data = CaseInput(**{**MATH_CASE.__dict__, **changes})
        return case_create(author=author or contributor, data=data)

    return make


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random yuan2_tiny checkpoint in the HF layout, made once a session by the trainer's own `init`.

    The subprocess takes about 2.5 s (it imports torch), which the training tests used to
    spend in the setup of every test. Nothing may write into this folder: a test that
    wants the checkpoint at a path of its own copies it with `install_tiny_base`.
    """
    out = tmp_path_factory.mktemp("tiny-base") / "yuan2-tiny-demo"
    subprocess.run([sys.executable, "-m", "trainer", "init", "--preset", "yuan2_tiny", "--out", str(out)],
                   cwd=REPO_ROOT, check=True, capture_output=True)
    return out


@pytest.fixture
def install_tiny_base(tiny_base: Path) -> Callable[[Path], Path]:
    """Copy the session's tiny checkpoint to a folder (a test's DEMO_BASE_CHECKPOINT) that is the test's own."""

    def install(out: Path) -> Path:
        shutil.copytree(tiny_base, out)
        return out

    return install

"""Foundation: platform/ never shadows the stdlib, settings from the environment, SQLite default."""

import sys
import sysconfig
from pathlib import Path

from django.conf import settings

from .conftest import PLATFORM_DIR, REPO_ROOT, run_manage

LONG_SECRET = "k" * 20 + "-not-a-real-key-but-long-enough-0123456789abcdef"


def test_import_platform_gives_the_standard_library() -> None:
    import platform

    assert not (PLATFORM_DIR / "__init__.py").exists()
    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert callable(platform.python_version)


def test_platform_folder_on_path_does_not_shadow_stdlib_in_manage_py() -> None:
    result = run_manage("shell", "--no-imports", "-c", "import platform; print(platform.__file__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(sysconfig.get_paths()["stdlib"])


def test_no_app_name_collides_with_stdlib_or_dependencies() -> None:
    apps = [path.name for path in PLATFORM_DIR.iterdir() if (path / "apps.py").exists()]
    assert sorted(apps) == ["accounts", "curation", "ghsync", "intake", "loop", "releases", "training"]
    forbidden = set(sys.stdlib_module_names) | {"datasets", "github", "trainer", "worker", "celery", "django"}
    assert not forbidden & set(apps)


def test_settings_read_database_and_redis_from_the_environment() -> None:
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")
    assert "RedisCache" in settings.CACHES["default"]["BACKEND"]


def test_embedded_default_is_sqlite_and_filesystem_broker(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.CELERY_BROKER_URL, s.ARTIFACT_ROOT)"
    )
    result = run_manage("shell", "--no-imports", "-c", code, env={"COTRAIN_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    engine, name, broker, artifacts = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert name == str(tmp_path / "cotrain.sqlite3")
    assert broker == "filesystem://localhost/"
    assert artifacts == str(tmp_path / "artifacts")


def test_sqlite_migrate_and_check(tmp_path: Path) -> None:
    env = {"COTRAIN_VAR_DIR": str(tmp_path)}
    migrate = run_manage("migrate", "--noinput", env=env)
    assert migrate.returncode == 0, migrate.stderr
    assert (tmp_path / "cotrain.sqlite3").stat().st_size > 0
    check = run_manage("check", env=env)
    assert check.returncode == 0, check.stderr
    pending = run_manage("makemigrations", "--check", "--dry-run", env=env)
    assert pending.returncode == 0, f"models changed without a migration:\n{pending.stdout}"


def test_production_refuses_to_start_without_a_secret_key() -> None:
    env = {"DJANGO_SETTINGS_MODULE": "cotrain_site.settings.production", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_passes_check_deploy(tmp_path: Path) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": "cotrain_site.settings.production",
        "DJANGO_SECRET_KEY": LONG_SECRET,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "DJANGO_ALLOWED_HOSTS": "cotrain.example.org",
        "COTRAIN_VAR_DIR": str(tmp_path),
    }
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_env_example_lists_every_variable_the_settings_read() -> None:
    import re

    source = "\n".join(path.read_text() for path in (PLATFORM_DIR / "cotrain_site" / "settings").glob("*.py"))
    source += (REPO_ROOT / "platform" / "loop" / "management" / "commands" / "demo.py").read_text()
    read = set(re.findall(r"env_(?:str|bool|int|float|list)\(\s*\"([A-Z_]+)\"", source))
    read |= set(re.findall(r"os\.environ\.get\(\"([A-Z_]+)\"", source))
    listed = set(re.findall(r"^([A-Z_]+)=", (REPO_ROOT / ".env.example").read_text(), flags=re.MULTILINE))
    assert read, "the pattern found no variables"
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"

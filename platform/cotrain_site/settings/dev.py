"""The embedded default: a developer's machine or the demo (`manage.py demo`)."""

import os
import warnings
from pathlib import Path

from django.core.management.utils import get_random_secret_key

from .base import *  # noqa: F403
from .base import SECRET_KEY, VAR_DIR, env_bool


def _private_secret_key(path: Path) -> str:
    """The key in `path`, made on first use; only its owner may read it (it signs sessions)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under a temporary name with mode 0600 from the start, then linked
        # into place: the web process and the worker may start together, and each must
        # read one complete key (os.link fails for the second; it uses the first's).
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        with os.fdopen(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
            file.write(get_random_secret_key())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    if path.stat().st_mode & 0o077:
        # A key made before this check (plain write_text: 0644 under the usual umask).
        try:
            path.chmod(0o600)
        except PermissionError:
            warnings.warn(f"{path} is readable by other users and not ours to chmod 0600", stacklevel=1)
    return path.read_text().strip()


DEBUG = env_bool("DJANGO_DEBUG", True)
if not SECRET_KEY:
    # A key kept under var/ keeps sessions valid across restarts of the demo
    # without asking a newcomer to invent one.
    SECRET_KEY = _private_secret_key(VAR_DIR / "dev-secret-key")

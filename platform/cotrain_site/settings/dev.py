"""The embedded default: a developer's machine or the demo (`manage.py demo`)."""

from django.core.management.utils import get_random_secret_key

from .base import *  # noqa: F403
from .base import SECRET_KEY, VAR_DIR, env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
if not SECRET_KEY:
    # A key kept under var/ keeps sessions valid across restarts of the demo
    # without asking a newcomer to invent one.
    _key_file = VAR_DIR / "dev-secret-key"
    if not _key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(get_random_secret_key())
    SECRET_KEY = _key_file.read_text().strip()

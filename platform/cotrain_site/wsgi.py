"""WSGI entry point: `gunicorn --chdir platform cotrain_site.wsgi` (see docker-compose.yml)."""

import os
import sys
from pathlib import Path

_PLATFORM_DIR = str(Path(__file__).resolve().parent.parent)
if _PLATFORM_DIR not in sys.path:
    sys.path.append(_PLATFORM_DIR)

from django.core.wsgi import get_wsgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cotrain_site.settings.production")
application = get_wsgi_application()

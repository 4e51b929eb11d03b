"""ASGI entry point, for servers such as uvicorn or daphne."""

import os
import sys
from pathlib import Path

_PLATFORM_DIR = str(Path(__file__).resolve().parent.parent)
if _PLATFORM_DIR not in sys.path:
    sys.path.append(_PLATFORM_DIR)

from django.core.asgi import get_asgi_application  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cotrain_site.settings.production")
application = get_asgi_application()

#!/usr/bin/env python
"""Django's command-line entry point for cotrain."""

import os
import sys
from pathlib import Path

# `platform/` is a source folder, not a package: a package named `platform` would
# shadow the standard library module that Django, Celery and torch import. Its
# apps are imported by bare name, so the folder itself goes on sys.path. It is
# appended (not prepended) so nothing in it can shadow the standard library.
PLATFORM_DIR = Path(__file__).resolve().parent / "platform"
if str(PLATFORM_DIR) not in sys.path:
    sys.path.append(str(PLATFORM_DIR))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cotrain_site.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

"""The main job on the embedded default: migrate, a demo maintainer, sample cases, serve.

Issue 4 extends it with the training loop (batch, train, evaluate, release).
"""

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from accounts.services import maintainer_ensure
from intake.importing import cases_import_records

SAMPLE_CASES = Path(__file__).resolve().parents[2] / "fixtures" / "sample_cases.jsonl"


class Command(BaseCommand):
    help = "Set up the demo (migrate, demo maintainer, sample cases) and serve the web app."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default=os.environ.get("COTRAIN_DEMO_ADDRPORT", "127.0.0.1:8000"))
        parser.add_argument("--no-serve", action="store_true", help="set up, print the credentials and exit")
        parser.add_argument("--username", default="maintainer")

    def handle(self, *args: Any, addrport: str, no_serve: bool, username: str, **options: Any) -> None:
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        self.stdout.write(f"database: {settings.DATABASES['default']['NAME']} (migrated)")

        # A fresh password each start, unless one is given: a demo left running on a
        # shared machine should not keep a guessable maintainer login.
        password = os.environ.get("COTRAIN_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        maintainer_ensure(username=username, password=password)

        lines = SAMPLE_CASES.read_text(encoding="utf-8").splitlines()
        records = [(number, json.loads(text)) for number, text in enumerate(lines, start=1) if text.strip()]
        result = cases_import_records(records=records)
        self.stdout.write(f"sample cases: {result.created} loaded, {result.skipped} already present")

        url = f"http://{addrport if ':' in addrport else '127.0.0.1:' + addrport}/"
        self.stdout.write(self.style.SUCCESS("\ncotrain demo is ready"))
        self.stdout.write(f"  web app:    {url}")
        self.stdout.write(f"  triage:     {url}triage/")
        self.stdout.write(f"  API docs:   {url}api/docs/")
        self.stdout.write(f"  maintainer: username {username}   password {password}\n")
        if not no_serve:
            call_command("runserver", addrport, use_reloader=False)

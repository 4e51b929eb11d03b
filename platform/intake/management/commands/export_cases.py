import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from intake.selectors import case_iter_all, case_to_record


class Command(BaseCommand):
    help = "Write every case as one JSON line (to stdout, or to --output FILE)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", type=Path, help="file to write instead of stdout")

    def handle(self, *args: Any, output: Path | None, **options: Any) -> None:
        stream = output.open("w", encoding="utf-8") if output else sys.stdout
        count = 0
        try:
            for case in case_iter_all():
                stream.write(json.dumps(case_to_record(case=case), ensure_ascii=False) + "\n")
                count += 1
        finally:
            if output:
                stream.close()
        self.stderr.write(f"exported {count} cases")

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from intake.importing import CaseImportError, cases_import_records, records_parse


class Command(BaseCommand):
    help = (
        "Import cases from a JSON-lines file in the export_cases format. Cases already present are skipped; "
        "if any line is bad, every bad line is reported by number and nothing is imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, file: Path, **options: Any) -> None:
        records, errors = [], []
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                records.append((number, json.loads(text)))
            except json.JSONDecodeError as exc:
                errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            except RecursionError:
                errors.append(f"line {number}: not a case (arrays or objects nested too deep to read)")
        try:
            if errors:
                # Report the bad content of the other lines too, in line order.
                try:
                    records_parse(records=records)
                except CaseImportError as exc:
                    errors.extend(exc.errors)
                raise CaseImportError(sorted(errors, key=lambda error: int(error.split(":")[0].split()[1])))
            result = cases_import_records(records=records)
        except CaseImportError as exc:
            for error in exc.errors:
                self.stderr.write(error)
            raise CommandError(f"{len(exc.errors)} bad line(s) in {file}; nothing was imported") from exc
        self.stdout.write(f"imported {result.created} cases, skipped {result.skipped} already present")

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from curation.services.benchmarks import benchmark_register


class Command(BaseCommand):
    help = (
        "Register a benchmark set (JSONL: id, prompt, answer a line) that every dataset build keeps out of train. "
        "A bad file is reported by line and nothing is stored; the same file again is a no-op."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="slug naming the set, e.g. ceval-mini")
        parser.add_argument("file", type=Path)
        parser.add_argument("--description", default="")

    def handle(self, *args: Any, name: str, file: Path, description: str, **options: Any) -> None:
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        try:
            benchmark = benchmark_register(name=name, data=data, by=None, description=description)
        except ValidationError as exc:
            raise CommandError(f"{file}: " + " ".join(exc.messages)) from exc
        self.stdout.write(f"benchmark {benchmark.name}: {benchmark.item_count} items, sha256 {benchmark.sha256}")

"""`python manage.py sync_github [--repo OWNER/NAME] [--label L ...] [--tracking-issue N ...] [--since ISO]`."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from ghsync import selectors, services


class Command(BaseCommand):
    help = "Sync GitHub intake sources in the foreground and print what changed (reads GitHub only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--repo", help="OWNER/NAME: create or update this source and sync only it")
        parser.add_argument("--api-url", default="", help="GitHub Enterprise API base URL for --repo")
        parser.add_argument("--label", action="append", default=[], help="intake label (repeatable)")
        parser.add_argument("--tracking-issue", action="append", type=int, default=[], help="tracking issue number")
        parser.add_argument("--maintainer", action="append", default=[], help="login whose posts are not requests")
        parser.add_argument("--since", help="ISO time: read what changed since then instead of the cursor")
        parser.add_argument("--full", action="store_true", help="read everything (refresh 👍, find deletions)")

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            since = parse_datetime(options["since"])
            if since is None or since.tzinfo is None:
                raise CommandError(
                    f"--since {options['since']!r} is not an ISO time with a zone, e.g. 2024-01-06T00:00:00Z"
                )
        if options["repo"]:
            try:
                source, created = services.source_create_or_update(
                    repo=options["repo"],
                    api_url=options["api_url"],
                    labels=options["label"],
                    tracking_issues=options["tracking_issue"],
                    maintainers=options["maintainer"],
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
            self.stdout.write(f"{'Created' if created else 'Using'} source {source.repo}")
            sources = [source]
        else:
            sources = [selectors.source_get(source_id=pk) for pk in selectors.source_ids_enabled()]
            if not sources:
                raise CommandError("No sources: give --repo OWNER/NAME with --label and/or --tracking-issue.")
        for source in sources:
            self._sync(source, options, since)

    def _sync(self, source: Any, options: dict[str, Any], since: Any) -> None:
        if not services.source_claim(source_id=source.pk):
            self.stderr.write(f"{source.repo}: another sync is running; skipped")
            return
        try:
            summary = services.source_sync(
                source=source,
                client=services.source_client(source=source),
                labels=options["label"] or None,
                tracking_issues=options["tracking_issue"] or None,
                since=since,
                full=True if options["full"] else None,
            )
        finally:
            services.source_release(source_id=source.pk)
        self.stdout.write(f"{source.repo}:")
        for line in summary.lines():
            self.stdout.write(f"  {line}")

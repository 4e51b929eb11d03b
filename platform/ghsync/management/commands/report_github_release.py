"""`python manage.py report_github_release TAG [--dry-run]`: comment on the GitHub issues a release answers."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ghsync import services
from releases.models import Release


class Command(BaseCommand):
    help = "Report a published release back to the GitHub issues and comments its cases came from."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tag", help="the release tag")
        parser.add_argument("--dry-run", action="store_true", help="print what would be posted; write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        release = Release.objects.filter(tag=options["tag"]).first()
        if release is None:
            raise CommandError(f"There is no release {options['tag']!r}.")
        if options["dry_run"]:
            for plan in services.report_release(release=release, dry_run=True):
                state = "on" if plan.enabled else "off for this source"
                self.stdout.write(f"--- {plan.source.repo}#{plan.issue_number} (reporting {state}) {plan.key}")
                self.stdout.write(plan.body)
                if plan.labels:
                    self.stdout.write(f"[labels: {', '.join(plan.labels)}]")
            return
        intents = services.report_release(release=release)
        self.stdout.write(f"{len(intents)} comment(s) recorded and queued for posting.")

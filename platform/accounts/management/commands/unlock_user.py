from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.selectors import login_lockouts_active
from accounts.services import user_unlock


class Command(BaseCommand):
    help = "Lift the log-in lockout of account NAME now (and forget its failed attempts); --list shows every lockout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("usernames", nargs="*", metavar="NAME")
        parser.add_argument(
            "--list", dest="show", action="store_true", help="print the lockouts in force (accounts and addresses)"
        )

    def handle(self, *args: Any, usernames: list[str], show: bool, **options: Any) -> None:
        if show:
            for lockout in login_lockouts_active():
                until = f"{lockout.locked_until:%Y-%m-%d %H:%M %Z}"
                self.stdout.write(f"{lockout.kind}\t{lockout.key}\t{lockout.failures} failures\tuntil {until}")
        for username in usernames:
            lifted = user_unlock(username=username)
            state = "lockout lifted" if lifted else "was not locked out"
            self.stdout.write(f"{username}: {state}; failed attempts reset")

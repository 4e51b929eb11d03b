"""GitHub intake throughput: sync 10,000 tracking-issue comments from the local GitHub into PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cotrain_bench python bench/ghsync_sync.py [--comments N]

The comments are the fixtures' requests in every format (one-line, several lines,
numbered lists, code blocks, tables, English, prose without an example, +1s and
maintainer posts), made unique by number; they are served by tests/web/github_fake.py
through PyGithub (100 a page, Link pagination) and parsed and stored by
`ghsync.services.source_sync`, exactly as `manage.py sync_github` does. The database
named by DATABASE_URL is created if missing and migrated; its GitHub rows are
deleted first. Prints the first sync, an incremental one (nothing changed) and a full pass
(everything read again: 👍 refreshed, deletions looked for).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "platform"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cotrain_bench")
os.environ["DJANGO_SETTINGS_MODULE"] = "cotrain_site.settings.test"
REPO = "IEIT-Yuan/Yuan-2.0"


def ensure_database(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, default=10_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from ghsync.client import RetryPolicy
    from ghsync.models import GithubItem, GithubSource, OutgoingComment
    from ghsync.services import source_client, source_create_or_update, source_sync
    from intake.models import CaseSource, FeedbackCase

    from tests.web.github_fake import FakeGithubServer, load_fixture

    call_command("migrate", verbosity=0)
    OutgoingComment.objects.all().delete()
    GithubItem.objects.all().delete()
    GithubSource.objects.all().delete()
    FeedbackCase.objects.filter(source=CaseSource.GITHUB).delete()

    templates = load_fixture("tracking_comments.json")
    with FakeGithubServer() as server:
        server.fake.add_issue(REPO, load_fixture("tracking_issue.json"))
        for i in range(args.comments):
            template = templates[i % len(templates)]
            comment = {**template, "id": 3_000_000_000 + i, "user": {**template["user"], "login": f"dev{i % 997}"}}
            comment["body"] = template["body"].replace("输入：", f"输入：（{i}）", 1) + f"\n\n<!-- {i} -->"
            server.fake.add_comment(REPO, 1, comment)
        source, _ = source_create_or_update(repo=REPO, api_url=server.base_url, tracking_issues=[1])
        figures = {}
        for run, full in (("first", False), ("incremental", False), ("full pass", True)):
            source = GithubSource.objects.get(pk=source.pk)
            client = source_client(source=source, policy=RetryPolicy(sleep=lambda s: None))
            started = time.perf_counter()
            summary = source_sync(source=source, client=client, full=full)
            seconds = time.perf_counter() - started
            figures[run] = {"seconds": round(seconds, 2), **summary.as_dict()}
            print(
                f"{run} sync: {seconds:.1f} s, {args.comments / seconds:,.0f} comments/s; " + "; ".join(summary.lines())
            )
    figures["comments"] = args.comments
    figures["cases"] = FeedbackCase.objects.filter(source=CaseSource.GITHUB).count()
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

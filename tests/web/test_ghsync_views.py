"""The maintainers' GitHub page (priority and why), the periodic tasks, and the app's name."""

from collections.abc import Callable

import pytest
from django.test import Client

from accounts.models import User
from cotrain_site import celery_app
from ghsync import tasks
from ghsync.models import GithubSource
from ghsync.services import SyncSummary, source_claim

from .ghsync_support import *  # noqa: F403 - the fixtures: github, clock, source, sync
from .github_fake import FakeGithub

pytestmark = pytest.mark.django_db


def test_pygithub_is_the_only_github_module() -> None:
    import github as pygithub

    assert pygithub.__file__.endswith("site-packages/github/__init__.py")


def test_priority_page_lists_cases_with_the_reason(
    sync: Callable[..., SyncSummary], maintainer: User, client_for: Callable[[User], Client]
) -> None:
    sync()
    response = client_for(maintainer).get("/github/priorities/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "wangyx-nlp reported 2 problems (×10 = 20) + 12 votes (0 here, 12 👍 on GitHub) = 32" in html
    assert html.index("古诗词鉴赏") < html.index("新闻摘要")  # 32 before 20
    assert "IEIT-Yuan/Yuan-2.0" in html


def test_priority_page_is_for_maintainers(contributor: User, client_for: Callable[[User], Client]) -> None:
    assert client_for(contributor).get("/github/priorities/").status_code == 403


def test_beat_task_queues_one_sync_per_enabled_source(source: GithubSource, monkeypatch: pytest.MonkeyPatch) -> None:
    GithubSource.objects.create(repo="someone/disabled", enabled=False)
    queued: list[tuple[str, list[int]]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: queued.append((name, args)))
    assert tasks.sync_all_sources() == 1 and queued == [("ghsync.tasks.sync_source", [source.pk])]


def test_sync_task_claims_its_source(source: GithubSource, github: FakeGithub) -> None:
    result = tasks.sync_source(source.pk)
    assert result["new"] == 14
    assert source_claim(source_id=source.pk)  # the lease was given back
    assert tasks.sync_source(source.pk) == {"skipped": "another sync holds this source"}

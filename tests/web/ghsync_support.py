"""Fixtures for the ghsync tests: a local GitHub server, a fake clock, a configured source, the broker's queue."""

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from django.conf import settings as django_settings

from ghsync.client import RetryPolicy
from ghsync.models import GithubSource
from ghsync.services import SyncSummary, source_client, source_create_or_update, source_sync

from .github_fake import FakeGithub, FakeGithubServer

__all__ = ["broker", "clock", "github", "source", "sync"]
REPO = "IEIT-Yuan/Yuan-2.0"
WEBHOOK_SECRET = "It's a Secret to Everybody"


@dataclass
class FakeClock:
    """Time for the retry policy: `sleep` moves it on instantly (and lets the fake's rate limit reset)."""

    fake: FakeGithub
    now: float = 1_899_999_000.0
    slept: list[float] = field(default_factory=list)

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.now >= self.fake.rate_reset:
            self.fake.rate_remaining = self.fake.rate_limit
            self.fake.rate_reset = int(self.now) + 3600


@pytest.fixture
def github(settings) -> Iterator[FakeGithub]:
    with FakeGithubServer() as server:
        server.fake.load_yuan(REPO)
        settings.GITHUB_API_URL = server.base_url
        # The fixtures are github.com's payloads, read here through a local API address.
        settings.GITHUB_WEB_URL = "https://github.com"
        settings.GITHUB_TOKEN = "ghp_test_token_not_real"
        settings.GITHUB_WEBHOOK_SECRET = WEBHOOK_SECRET
        yield server.fake


@pytest.fixture
def clock(github: FakeGithub) -> FakeClock:
    return FakeClock(github)


@pytest.fixture
def source(db: None, github: FakeGithub) -> GithubSource:
    created, _ = source_create_or_update(repo=REPO, labels=["co-training"], tracking_issues=[1])
    return created


@pytest.fixture
def sync(source: GithubSource, clock: FakeClock) -> Callable[..., SyncSummary]:
    def run(**options: object) -> SyncSummary:
        fresh = GithubSource.objects.get(pk=source.pk)
        client = source_client(source=fresh, policy=RetryPolicy(sleep=clock.sleep, clock=clock.time, max_wait=7200))
        return source_sync(source=fresh, client=client, **options)

    return run


@dataclass
class BrokerQueue:
    """The Celery messages really sent to the broker (Redis, the `default` queue), read back without a worker."""

    client: redis.Redis

    def sent(self, task: str) -> list[list[object]]:
        """The args of each message for `task`, oldest first (kombu pushes to the left)."""
        found = []
        for raw in reversed(self.client.lrange("default", 0, -1)):
            message = json.loads(raw)
            if message["headers"]["task"] == task:
                args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
                found.append(args)
        return found

    def ids(self, task: str) -> list[object]:
        return [args[0] for args in self.sent(task)]


@pytest.fixture
def broker() -> Iterator[BrokerQueue]:
    url = django_settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        pytest.skip("reads the messages back from a Redis broker")
    queue = BrokerQueue(redis.Redis.from_url(url))
    queue.client.delete("default")
    yield queue
    queue.client.delete("default")

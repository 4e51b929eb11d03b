"""Configuring sources, and the client and lease a sync of one source uses."""

import os
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ghsync.client import GithubClient, RetryPolicy
from ghsync.models import GithubSource
from ghsync.sanitize import web_host_for

REPO_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
SYNC_LEASE = timedelta(minutes=30)


def _check_repo(repo: str) -> str:
    owner, _, name = repo.strip().partition("/")
    if not owner or not name or not set(owner + name) <= REPO_CHARS:
        raise ValidationError(f"{repo!r} is not a repository name like OWNER/NAME.", code="bad_repo")
    return f"{owner}/{name}"


def source_api_url(*, source: GithubSource) -> str:
    return (source.api_url or settings.GITHUB_API_URL).rstrip("/")


def source_web_host(*, source: GithubSource) -> str:
    """The host this source's issue and comment links must be on (`html_url`s elsewhere are dropped).

    GITHUB_WEB_URL names it when the API is reached through another address (a proxy,
    a mirror); otherwise it follows from the API URL.
    """
    uses_default_api = not source.api_url or source.api_url.rstrip("/") == settings.GITHUB_API_URL
    if uses_default_api and settings.GITHUB_WEB_URL:
        return (urlsplit(settings.GITHUB_WEB_URL).hostname or "").lower()
    return web_host_for(source_api_url(source=source))


def source_token(*, source: GithubSource) -> str:
    """The source's own token variable when it names one, else GITHUB_TOKEN; tokens stay in the environment."""
    if source.token_env:
        return os.environ.get(source.token_env, "").strip()
    return settings.GITHUB_TOKEN


def source_host_prefix(*, source: GithubSource) -> str:
    """'' on github.com, 'HOST/' on GitHub Enterprise: external ids stay unique across servers."""
    host = urlsplit(source_api_url(source=source)).hostname or ""
    return "" if host in ("api.github.com", "github.com") else f"{host}/"


@transaction.atomic
def source_create_or_update(
    *,
    repo: str,
    api_url: str = "",
    labels: list[str] | None = None,
    tracking_issues: list[int] | None = None,
    maintainers: list[str] | None = None,
) -> tuple[GithubSource, bool]:
    """The source for `repo` (on `api_url`), created if new; given lists are added to its own."""
    repo = _check_repo(repo)
    source, created = GithubSource.objects.select_for_update().get_or_create(
        repo__iexact=repo, api_url=api_url.rstrip("/"), defaults={"repo": repo, "api_url": api_url.rstrip("/")}
    )
    changed = []
    for name, extra in (("intake_labels", labels), ("tracking_issues", tracking_issues), ("maintainers", maintainers)):
        current = list(getattr(source, name))
        merged = current + [value for value in extra or [] if value not in current]
        if merged != current:
            setattr(source, name, merged)
            changed.append(name)
    if changed:
        source.save(update_fields=changed)
    return source, created


def source_set_options(*, source: GithubSource, **options: bool) -> GithubSource:
    """Turn the switches on or off: enabled, ask_for_examples, report_back, contributions_licensed."""
    allowed = {"enabled", "ask_for_examples", "report_back", "contributions_licensed"}
    if not set(options) <= allowed:
        raise ValidationError(f"Unknown option(s): {', '.join(sorted(set(options) - allowed))}.")
    for name, value in options.items():
        setattr(source, name, bool(value))
    source.save(update_fields=list(options))
    return source


def source_client(*, source: GithubSource, policy: RetryPolicy | None = None) -> GithubClient:
    policy = policy or RetryPolicy(max_wait=settings.GITHUB_MAX_WAIT_SECONDS)
    return GithubClient(
        base_url=source_api_url(source=source),
        token=source_token(source=source),
        timeout=settings.GITHUB_TIMEOUT,
        policy=policy,
    )


def source_claim(*, source_id: int) -> bool:
    """Take the source for one sync; False when another sync holds it (its lease has not run out)."""
    now = timezone.now()
    return bool(
        GithubSource.objects.filter(pk=source_id)
        .exclude(sync_lease_until__gt=now)
        .update(sync_lease_until=now + SYNC_LEASE)
    )


def source_release(*, source_id: int) -> None:
    GithubSource.objects.filter(pk=source_id).update(sync_lease_until=None)

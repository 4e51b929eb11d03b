"""The network boundary: GitHub's REST API through PyGithub, with waiting and back-off.

Reads return GitHub's JSON as dicts (the same shapes a webhook delivers), so that
sync and webhooks share one code path in `ghsync.services`; they go through
PyGithub's `Requester`, which adds the token, base URL (GitHub Enterprise too) and
error types. Writes use PyGithub's objects.

PyGithub's own retrying is off (`retry=None`, no pause between requests): its
urllib3 retries sleep with `time.sleep` inside the library, which tests cannot
replace and a sync cannot count. `RetryPolicy` does it here instead, with an
injectable `sleep` and `clock`:

- primary rate limit: a response with `X-RateLimit-Remaining: 0` (or a 403/429 that
  says so) waits until `X-RateLimit-Reset`;
- secondary rate limits (403/429 with `Retry-After`, or "secondary rate limit" in
  the message): wait `Retry-After`, else back off exponentially from a minute;
- 5xx, timeouts and dropped connections: back off exponentially from a second.

A wait longer than `max_wait` raises `GithubUnavailable` instead: the sync stops
where it is and the next one resumes from its cursor.
"""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from github import Auth, Github, GithubException

log = logging.getLogger(__name__)
T = TypeVar("T")
PER_PAGE = 100
MARKER_PREFIX = "<!-- cotrain:"


class GithubUnavailable(Exception):
    """GitHub cannot be used now (rate limit far away, repeated errors); try again later."""


class GithubGone(Exception):
    """The issue or comment was deleted (404 or 410)."""


@dataclass
class RetryPolicy:
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    max_wait: float = 900.0
    max_attempts: int = 6
    waited: float = 0.0
    waits: list[tuple[str, float]] = field(default_factory=list)

    def wait(self, *, seconds: float, why: str) -> None:
        seconds = max(seconds, 0.0)
        if seconds > self.max_wait:
            raise GithubUnavailable(f"{why}: would wait {seconds:.0f} s (more than {self.max_wait:.0f} s)")
        log.info("GitHub: %s; waiting %.1f s", why, seconds)
        self.waits.append((why, seconds))
        self.waited += seconds
        self.sleep(seconds)


def _header(headers: dict[str, Any] | None, name: str) -> str:
    headers = headers or {}
    return str(headers.get(name.lower()) or headers.get(name) or "")


def _limit_wait(headers: dict[str, Any] | None, now: float) -> float | None:
    """Seconds to wait before the next request, from rate-limit headers; None when none is needed."""
    retry_after = _header(headers, "retry-after")
    if retry_after.isdigit():
        return float(retry_after)
    if _header(headers, "x-ratelimit-remaining") == "0":
        reset = _header(headers, "x-ratelimit-reset")
        return max(float(reset) - now, 0.0) + 1.0 if reset.isdigit() else 60.0
    return None


class GithubClient:
    """One repository's API, used by one sync or one task (not shared between threads)."""

    def __init__(self, *, base_url: str, token: str, timeout: int = 30, policy: RetryPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.requests_made = 0
        self._pause_until = 0.0
        self.gh = Github(
            auth=Auth.Token(token) if token else None,
            base_url=self.base_url,
            timeout=timeout,
            retry=None,
            per_page=PER_PAGE,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
        )

    # --- waiting and retrying -------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        attempt = 0
        while True:
            if self._pause_until > self.policy.clock():
                self.policy.wait(seconds=self._pause_until - self.policy.clock(), why="rate limit exhausted")
            attempt += 1
            self.requests_made += 1
            try:
                return fn()
            except GithubException as exc:
                delay = self._error_delay(exc, attempt)
                if delay is None or attempt >= self.policy.max_attempts:
                    if exc.status in (404, 410):
                        raise GithubGone(what) from exc
                    if delay is not None:
                        raise GithubUnavailable(f"{what}: HTTP {exc.status} after {attempt} attempts") from exc
                    raise
                self.policy.wait(seconds=delay, why=f"{what}: HTTP {exc.status}")
            except (requests.Timeout, requests.ConnectionError) as exc:
                if attempt >= self.policy.max_attempts:
                    raise GithubUnavailable(f"{what}: {type(exc).__name__} after {attempt} attempts") from exc
                self.policy.wait(seconds=2.0 ** (attempt - 1), why=f"{what}: {type(exc).__name__}")

    def _error_delay(self, exc: GithubException, attempt: int) -> float | None:
        if exc.status in (403, 429):
            message = str((exc.data or {}).get("message", "") if isinstance(exc.data, dict) else "").lower()
            wait = _limit_wait(exc.headers, self.policy.clock())
            if wait is not None:
                return wait
            if "rate limit" in message or exc.status == 429:
                # GitHub's advice for secondary limits without Retry-After: at least a minute, growing.
                return 60.0 * 2 ** (attempt - 1)
            return None  # a real "forbidden": retrying will not help
        if exc.status >= 500:
            return 2.0 ** (attempt - 1)
        return None

    def _get(self, url: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
        headers, data = self._call(
            f"GET {urlsplit(url).path}", lambda: self.gh.requester.requestJsonAndCheck("GET", url, parameters=params)
        )
        self._note_limits(headers)
        return headers, data

    def _note_limits(self, headers: dict[str, Any]) -> None:
        # The last allowed request was just made: the next one waits for the reset.
        if _header(headers, "x-ratelimit-remaining") == "0":
            wait = _limit_wait(headers, self.policy.clock()) or 0.0
            self._pause_until = self.policy.clock() + wait

    def _paginate(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following `Link: <...>; rel="next"`; a failed page is retried, not skipped."""
        url: str | None = f"/repos/{path}"
        query: dict[str, Any] | None = {**params, "per_page": PER_PAGE}
        while url:
            headers, data = self._get(url, query)
            yield from data or []
            url, query = _next_link(_header(headers, "link")), None

    # --- reads ----------------------------------------------------------------------

    def issues(self, *, repo: str, label: str, since: datetime | None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"state": "all", "labels": label, "sort": "updated", "direction": "asc"}
        if since is not None:
            params["since"] = since.isoformat().replace("+00:00", "Z")
        return self._paginate(f"{repo}/issues", params)

    def issue_comments(self, *, repo: str, number: int, since: datetime | None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {}
        if since is not None:
            params["since"] = since.isoformat().replace("+00:00", "Z")
        return self._paginate(f"{repo}/issues/{number}/comments", params)

    def issue(self, *, repo: str, number: int) -> dict[str, Any]:
        return self._get(f"/repos/{repo}/issues/{number}")[1]

    def comment(self, *, repo: str, comment_id: int) -> dict[str, Any]:
        return self._get(f"/repos/{repo}/issues/comments/{comment_id}")[1]

    def plus_one_count(self, *, repo: str, number: int | None = None, comment_id: int | None = None) -> int:
        """👍 reactions, for servers whose payloads carry no `reactions` summary."""
        path = f"{repo}/issues/comments/{comment_id}/reactions" if comment_id else f"{repo}/issues/{number}/reactions"
        return sum(1 for reaction in self._paginate(path, {"content": "+1"}) if reaction.get("content") == "+1")

    def find_marked_comment(self, *, repo: str, number: int, marker: str) -> dict[str, Any] | None:
        for comment in self._paginate(f"{repo}/issues/{number}/comments", {}):
            if marker in (comment.get("body") or ""):
                return comment
        return None

    # --- writes (only the ask-for-example and report-back tasks call these) ----------

    def create_comment(self, *, repo: str, number: int, body: str) -> dict[str, Any]:
        issue = self.gh.get_repo(repo, lazy=True).get_issue(number)
        comment = self._call(f"POST comment on #{number}", lambda: issue.create_comment(body))
        return {"id": comment.id, "html_url": comment.html_url}

    def add_labels(self, *, repo: str, number: int, labels: list[str]) -> None:
        issue = self.gh.get_repo(repo, lazy=True).get_issue(number)
        self._call(f"POST labels on #{number}", lambda: issue.add_to_labels(*labels))


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        if 'rel="next"' in part:
            return part.split(";")[0].strip().strip("<>")
    return None

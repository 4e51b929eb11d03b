"""A local GitHub: the REST endpoints ghsync uses, served on 127.0.0.1 to the real PyGithub.

Only the network is replaced: PyGithub sends real HTTP requests (base URL, token,
query parameters) and reads real responses (JSON bodies, `Link` pagination,
`X-RateLimit-*` headers, error statuses). State lives in `FakeGithub`, which tests
change between requests (edit a comment, delete it, add 👍) and inspect (`requests`,
`posted`). Faults are queued with `fail_next` (one answer each, matched by path).

Endpoints: issues list (`labels`, `since`, `state`, `sort`, `direction`, `per_page`,
`page`), one issue, issue comments (`since`, paging), one comment, reactions of an
issue or comment, create comment, add labels, `/rate_limit`. Deleted issues answer
410, deleted comments 404 (as GitHub does).
"""

import copy
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

FIXTURES = Path(__file__).parent / "fixtures" / "github"
BOT_LOGIN = "cotrain-bot"
Answer = tuple[int, dict[str, str], Any]  # status, headers, JSON body


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Fault:
    path_pattern: str
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # "drop": close the connection without answering (the client sees a dropped connection).
    mode: str = "answer"
    # Only requests with these query parameters (e.g. {"page": "2"}: the middle of a listing).
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


class FakeGithub:
    """The state of one fake GitHub server (one or more repositories)."""

    def __init__(self, *, prefix: str = "") -> None:
        self.prefix = prefix.rstrip("/")  # "/api/v3" for a GitHub Enterprise layout
        self.issues: dict[str, dict[int, dict[str, Any]]] = {}
        self.comments: dict[str, dict[int, dict[str, Any]]] = {}  # comment id -> payload (with "_issue")
        self.reactions: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
        self.deleted_issues: set[tuple[str, int]] = set()
        self.deleted_comments: set[tuple[str, int]] = set()
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self.posted: list[dict[str, Any]] = []
        self.labels_added: list[tuple[str, int, list[str]]] = []
        self.rate_limit = 5000
        self.rate_remaining = 5000
        self.rate_reset = 1_900_000_000
        self.next_comment_id = 1999000000
        self.lock = threading.Lock()
        self.base_url = ""

    # --- state helpers for tests ---------------------------------------------------

    def add_issue(self, repo: str, payload: dict[str, Any]) -> None:
        self.issues.setdefault(repo, {})[payload["number"]] = copy.deepcopy(payload)

    def add_comment(self, repo: str, number: int, payload: dict[str, Any]) -> None:
        stored = copy.deepcopy(payload)
        stored["_issue"] = number
        self.comments.setdefault(repo, {})[payload["id"]] = stored

    def edit_comment(self, repo: str, comment_id: int, *, body: str, updated_at: str) -> dict[str, Any]:
        comment = self.comments[repo][comment_id]
        comment["body"], comment["updated_at"] = body, updated_at
        return self._public(comment)

    def edit_issue(self, repo: str, number: int, **changes: Any) -> dict[str, Any]:
        self.issues[repo][number].update(changes)
        return copy.deepcopy(self.issues[repo][number])

    def delete_comment(self, repo: str, comment_id: int) -> None:
        self.deleted_comments.add((repo, comment_id))

    def delete_issue(self, repo: str, number: int) -> None:
        self.deleted_issues.add((repo, number))

    def set_plus_one(self, repo: str, *, comment_id: int | None = None, number: int | None = None, count: int) -> None:
        target = self.comments[repo][comment_id] if comment_id else self.issues[repo][number]
        target["reactions"]["+1"] = count
        kind, key = ("comment", comment_id) if comment_id else ("issue", number)
        self.reactions[(repo, kind, key)] = [
            {"id": 90000 + i, "node_id": f"REA_{i}", "user": {"login": f"fan{i}", "id": 500 + i, "type": "User"},
             "content": "+1", "created_at": "2024-02-01T00:00:00Z"}
            for i in range(count)
        ]  # fmt: skip

    def fail_next(self, path_pattern: str, status: int, message: str = "", *, headers: dict[str, str] | None = None,
                  mode: str = "answer", times: int = 1, query: dict[str, str] | None = None) -> None:  # fmt: skip
        body = {"message": message, "documentation_url": "https://docs.github.com/rest"}
        for _ in range(times):
            self.faults.append(Fault(path_pattern, status, body, headers or {}, mode, query or {}))

    def load_yuan(self, repo: str = "IEIT-Yuan/Yuan-2.0") -> None:
        """The tracking issue #1 with its comments, and the intake issues, from the fixtures."""
        self.add_issue(repo, load_fixture("tracking_issue.json"))
        for comment in load_fixture("tracking_comments.json"):
            self.add_comment(repo, 1, comment)
        for issue in load_fixture("intake_issues.json"):
            self.add_issue(repo, issue)

    def writes(self) -> list[Request]:
        return [request for request in self.requests if request.method != "GET"]

    # --- request handling ------------------------------------------------------------

    @staticmethod
    def _public(payload: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in copy.deepcopy(payload).items() if not key.startswith("_")}

    def _fault_for(self, path: str, query: dict[str, str]) -> Fault | None:
        for fault in self.faults:
            if re.search(fault.path_pattern, path) and fault.query.items() <= query.items():
                self.faults.remove(fault)
                return fault
        return None

    def _rate_headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(self.rate_remaining),
            "X-RateLimit-Reset": str(self.rate_reset),
            "X-RateLimit-Used": str(self.rate_limit - self.rate_remaining),
            "X-RateLimit-Resource": "core",
        }

    def handle(self, method: str, raw_path: str, body: Any, headers: dict[str, str]) -> Answer:
        with self.lock:
            parts = urlsplit(raw_path)
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            path = parts.path
            self.requests.append(Request(method, path, query, body, headers))
            if self.prefix and path.startswith(self.prefix):
                path = path[len(self.prefix) :]
            fault = self._fault_for(path, query)
            if fault is not None:
                return fault.status, {**self._rate_headers(), **fault.headers, "X-Fault-Mode": fault.mode}, fault.body
            if path == "/rate_limit":
                core = {"limit": self.rate_limit, "remaining": self.rate_remaining, "reset": self.rate_reset, "used": 0}
                return 200, self._rate_headers(), {"resources": {"core": core}, "rate": core}
            if self.rate_remaining <= 0:
                message = "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, ..."
                return (
                    403,
                    self._rate_headers(),
                    {"message": message, "documentation_url": "https://docs.github.com/rest"},
                )
            self.rate_remaining -= 1
            status, extra, data = self._route(method, path, query, body)
            return status, {**self._rate_headers(), **extra}, data

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        routes = [
            ("GET", r"/repos/([^/]+/[^/]+)/issues", self._list_issues),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", self._get_comment),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)/reactions", self._comment_reactions),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/(\d+)", self._get_issue),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", self._list_comments),
            ("GET", r"/repos/([^/]+/[^/]+)/issues/(\d+)/reactions", self._issue_reactions),
            ("POST", r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", self._create_comment),
            ("POST", r"/repos/([^/]+/[^/]+)/issues/(\d+)/labels", self._add_labels),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return handler(query, body, *match.groups())
        return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}

    def _page(self, items: list[dict[str, Any]], query: dict[str, str], path: str) -> Answer:
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []
        last = max((len(items) + per_page - 1) // per_page, 1)
        for rel, number in (("next", page + 1), ("last", last)):
            if (rel == "next" and page < last) or (rel == "last" and page < last):
                links.append(
                    f'<{self.base_url}{self.prefix}{path}?{urlencode({**query, "page": number})}>; rel="{rel}"'
                )
        return 200, ({"Link": ", ".join(links)} if links else {}), [self._public(item) for item in chunk]

    def _list_issues(self, query: dict[str, str], _body: Any, repo: str) -> Answer:
        issues = [i for n, i in self.issues.get(repo, {}).items() if (repo, n) not in self.deleted_issues]
        wanted = [label for label in query.get("labels", "").split(",") if label]
        issues = [i for i in issues if all(w in {label["name"] for label in i["labels"]} for w in wanted)]
        if query.get("state", "open") != "all":
            issues = [i for i in issues if i["state"] == query.get("state", "open")]
        if "since" in query:
            issues = [i for i in issues if _time(i["updated_at"]) >= _time(query["since"])]
        key = "updated_at" if query.get("sort") == "updated" else "created_at"
        issues.sort(key=lambda i: (i[key], i["number"]), reverse=query.get("direction", "desc") == "desc")
        return self._page(issues, query, f"/repos/{repo}/issues")

    def _get_issue(self, _query: dict[str, str], _body: Any, repo: str, number: str) -> Answer:
        if (repo, int(number)) in self.deleted_issues:
            return 410, {}, {"message": "This issue was deleted", "documentation_url": "https://docs.github.com/rest"}
        issue = self.issues.get(repo, {}).get(int(number))
        return (200, {}, self._public(issue)) if issue else (404, {}, {"message": "Not Found"})

    def _list_comments(self, query: dict[str, str], _body: Any, repo: str, number: str) -> Answer:
        if (repo, int(number)) in self.deleted_issues or int(number) not in self.issues.get(repo, {}):
            return 404, {}, {"message": "Not Found"}
        comments = [
            c for cid, c in self.comments.get(repo, {}).items()
            if c["_issue"] == int(number) and (repo, cid) not in self.deleted_comments
        ]  # fmt: skip
        if "since" in query:
            comments = [c for c in comments if _time(c["updated_at"]) >= _time(query["since"])]
        comments.sort(key=lambda c: c["id"])
        return self._page(comments, query, f"/repos/{repo}/issues/{number}/comments")

    def _get_comment(self, _query: dict[str, str], _body: Any, repo: str, cid: str) -> Answer:
        comment = self.comments.get(repo, {}).get(int(cid))
        if comment is None or (repo, int(cid)) in self.deleted_comments:
            return 404, {}, {"message": "Not Found"}
        return 200, {}, self._public(comment)

    def _reactions(self, query: dict[str, str], repo: str, kind: str, key: int, path: str) -> Answer:
        items = self.reactions.get((repo, kind, key), [])
        if "content" in query:
            items = [r for r in items if r["content"] == query["content"]]
        return self._page(items, query, path)

    def _comment_reactions(self, query: dict[str, str], _body: Any, repo: str, cid: str) -> Answer:
        return self._reactions(query, repo, "comment", int(cid), f"/repos/{repo}/issues/comments/{cid}/reactions")

    def _issue_reactions(self, query: dict[str, str], _body: Any, repo: str, number: str) -> Answer:
        return self._reactions(query, repo, "issue", int(number), f"/repos/{repo}/issues/{number}/reactions")

    def _create_comment(self, _query: dict[str, str], body: Any, repo: str, number: str) -> Answer:
        if (repo, int(number)) in self.deleted_issues:
            return 410, {}, {"message": "This issue was deleted"}
        self.next_comment_id += 1
        cid = self.next_comment_id
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        url = f"https://api.github.com/repos/{repo}/issues/comments/{cid}"
        comment = {
            "url": url, "html_url": f"https://github.com/{repo}/issues/{number}#issuecomment-{cid}",
            "issue_url": f"https://api.github.com/repos/{repo}/issues/{number}", "id": cid, "node_id": f"IC_{cid}",
            "user": {"login": BOT_LOGIN, "id": 1, "type": "User", "site_admin": False}, "created_at": now,
            "updated_at": now, "author_association": "MEMBER", "body": body["body"],
            "reactions": {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0,
                          "confused": 0, "heart": 0, "rocket": 0, "eyes": 0},
            "performed_via_github_app": None,
        }  # fmt: skip
        self.add_comment(repo, int(number), comment)
        self.posted.append({"repo": repo, "number": int(number), **comment})
        return 201, {"Location": url}, self._public(comment)

    def _add_labels(self, _query: dict[str, str], body: Any, repo: str, number: str) -> Answer:
        names = body.get("labels", []) if isinstance(body, dict) else body
        self.labels_added.append((repo, int(number), list(names)))
        issue = self.issues.get(repo, {}).get(int(number))
        if issue is not None:
            known = {label["name"] for label in issue["labels"]}
            issue["labels"] += [{"id": 7000 + i, "name": n, "color": "ededed", "default": False} for i, n in
                                enumerate(names) if n not in known]  # fmt: skip
        return 200, {}, issue["labels"] if issue else []


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGithub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        status, headers, data = self.fake.handle(self.command, self.path, body, dict(self.headers))
        if headers.pop("X-Fault-Mode", "answer") == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        payload = json.dumps(data, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve


class FakeGithubServer:
    """`with FakeGithubServer() as server:` serves `server.fake` at `server.base_url`."""

    def __init__(self, fake: FakeGithub | None = None) -> None:
        self.fake = fake or FakeGithub()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.fake.base_url = f"http://{host}:{port}"
        self.base_url = f"{self.fake.base_url}{self.fake.prefix}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeGithubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def iter_requests(self) -> Iterator[Request]:
        return iter(self.fake.requests)

"""An attack-and-fault campaign against a live cotrain instance, over HTTP only.

    .venv/bin/python scripts/attack_campaign.py --mode embedded   --out bench/results/security-embedded.json
    .venv/bin/python scripts/attack_campaign.py --mode production --out bench/results/security-production.json

`embedded` is the fresh-clone default (runserver, SQLite, the filesystem broker);
`production` is gunicorn with the production settings, PostgreSQL and Redis (the local
servers, a database and a Redis db of its own). Each mode starts its own instance and
a real Celery worker in a temporary folder, attacks it as a visitor, a contributor and
GitHub would, then counts from the database what the attacks left behind:

- bypasses: submissions past the address limit with forged `X-Forwarded-For`,
  accounts past the sign-up limit, a right password accepted after 100 wrong ones
  (site and admin);
- 5xx: cheap inputs and a seeded fuzz of the submission API;
- partial writes: cases stored beyond the 201s answered;
- lost or stuck webhook deliveries: every signed delivery must end processed or failed;
- scripts: a `javascript:` URL or raw `<script>` reaching a maintainer's page.

The figures go into the closing note of issue 12 and `bench/results/`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WEBHOOK_SECRET = "campaign-webhook-secret"
PASSWORD = "campaign-Password-9871"
CASE = {
    "scenario": "小学数学应用题",
    "prompt": "小明有3个苹果，又买了5个，还剩几个？",
    "bad_output": "10个",
    "expected_output": "3 + 5 = 8，小明有8个苹果。",
    "language": "zh",
    "model_version": "Yuan2-2B-Mars-hf",
    "license_consent": True,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Instance:
    """A cotrain web process and a Celery worker (with beat) in a folder of their own."""

    def __init__(self, mode: str, root: Path) -> None:
        self.mode, self.root, self.port = mode, root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_", "CELERY_", "COTRAIN_"))}
        self.env.update({
            "COTRAIN_VAR_DIR": str(root / "var"),
            "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GITHUB_TOKEN": "",
            "COTRAIN_SUBMIT_RATE_IP": "20/hour",
            "COTRAIN_SUBMIT_RATE_USER": "100000/hour",
            "PYTHONUNBUFFERED": "1",
        })
        if mode == "production":
            database = f"cotrain_campaign_{os.getpid()}"
            subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", database], check=True)
            self.database = database
            self.env.update({
                "DJANGO_SETTINGS_MODULE": "cotrain_site.settings.production",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
                "DJANGO_SECURE_SSL_REDIRECT": "false",
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
                "REDIS_URL": "redis://127.0.0.1:6379/9",
            })
            subprocess.run(["redis-cli", "-n", "9", "flushdb"], check=True, capture_output=True)

    def manage(self, *args: str) -> str:
        done = subprocess.run([PY, "manage.py", *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
                              text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def query(self, code: str) -> Any:
        """Run `code` (which sets `out`) in the instance's Django and return `out` as JSON."""
        text = self.manage("shell", "-c", code + "\nimport json; print('@@' + json.dumps(out, default=str))")
        return json.loads(text.rsplit("@@", 1)[1])

    def _spawn(self, args: list[str], name: str, env: dict[str, str] | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.procs.append(subprocess.Popen(args, cwd=REPO_ROOT, env={**self.env, **(env or {})}, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True))

    def start(self, **env: str) -> None:
        if self.mode == "production":  # rate-limit counters of an earlier phase live in Redis
            subprocess.run(["redis-cli", "-n", "9", "flushdb"], check=True, capture_output=True)
        self.manage("migrate", "--noinput")
        if self.mode == "production":
            self.manage("collectstatic", "--noinput")
            web = ["gunicorn", "--chdir", "platform", "--bind", f"127.0.0.1:{self.port}", "--workers", "3",
                   "--timeout", "60", "cotrain_site.wsgi:application"]
            web[0] = str(Path(PY).parent / "gunicorn")
        else:
            web = [PY, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.port}"]
        self._spawn(web, "web", env)
        self._spawn([PY, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "default,gpu", "-B",
                     "--concurrency", "2", "--loglevel", "INFO", "-s", str(self.root / "beat-schedule")],
                    "worker", env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/", timeout=10)
                return
            except requests.RequestException:  # not listening yet, or still booting its workers
                time.sleep(0.5)
        raise RuntimeError("the web process did not answer; see " + str(self.root / "web.log"))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs.clear()

    def drop(self) -> None:
        if self.mode == "production":
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", self.database], check=False)


class Browser:
    """A cookie jar kept by hand: the production settings mark cookies Secure, and this talks plain HTTP."""

    def __init__(self, base: str, address: str | None = None) -> None:
        self.base, self.cookies, self.address = base, {}, address

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.address:
            headers.setdefault("X-Forwarded-For", self.address)
        if method != "GET" and "csrftoken" in self.cookies:
            headers.setdefault("X-CSRFToken", self.cookies["csrftoken"])
        response = requests.request(method, self.base + path, headers=headers, cookies=self.cookies,
                                    allow_redirects=False, timeout=60, **kwargs)
        self.cookies.update(response.cookies.get_dict())
        return response

    def form(self, path: str, data: dict[str, Any], headers: dict[str, str] | None = None) -> requests.Response:
        page = self.request("GET", path, headers=headers)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        token = match.group(1) if match else self.cookies.get("csrftoken", "")
        return self.request("POST", path, data={**data, "csrfmiddlewaretoken": token},
                            headers={**(headers or {}), "Referer": self.base + path})

    def login(self, username: str, password: str, path: str = "/accounts/login/") -> bool:
        response = self.form(path, {"username": username, "password": password})
        return response.status_code == 302 and "sessionid" in self.cookies


def count(status_codes: list[int], low: int, high: int) -> int:
    return sum(low <= code <= high for code in status_codes)


def probe_forwarded_for(instance: Instance) -> dict[str, Any]:
    """Hit the address limit, then forge X-Forwarded-For: every 201 after the first 429 is a bypass."""
    out: dict[str, Any] = {}
    for channel in ("api", "web"):
        user = Browser(instance.url)
        name = f"xff_{channel}"
        instance.query(f"from accounts.services import user_create; user_create(username='{name}', "
                       f"password='{PASSWORD}'); out = 1")
        assert user.login(name, PASSWORD), "the campaign user could not log in"
        codes: list[int] = []
        for index in range(60):
            if channel == "api":
                body = {**CASE, "prompt": f"{index} {CASE['prompt']}"}
                codes.append(user.request("POST", "/api/v1/cases/", json=body).status_code)
            else:
                form = {**CASE, "prompt": f"{index} web {CASE['prompt']}", "license_consent": "on", "tags_text": ""}
                codes.append(user.form("/submit/", form).status_code)
            if codes[-1] == 429:
                break
        limited = codes[-1] == 429
        forged: list[int] = []
        for index in range(10):
            forged_header = {"X-Forwarded-For": f"10.1.2.{index}"}
            if channel == "api":
                forged.append(user.request("POST", "/api/v1/cases/", headers=forged_header,
                                           json={**CASE, "prompt": f"forged {index}"}).status_code)
            else:
                form = {**CASE, "prompt": f"forged web {index}", "license_consent": "on", "tags_text": ""}
                forged.append(user.form("/submit/", form, headers=forged_header).status_code)
        out[channel] = {"accepted_before_limit": len(codes) - 1, "limited": limited, "forged_tried": len(forged),
                        "bypasses": count(forged, 200, 399)}
    return out


def probe_signup(instance: Instance) -> dict[str, Any]:
    """30 sign-ups from one address, then 10 with forged addresses: accounts past the limit are bypasses."""
    codes, forged = [], []
    for index in range(30):
        form = {"username": f"flood{index}", "email": "", "password1": PASSWORD, "password2": PASSWORD}
        codes.append(Browser(instance.url).form("/accounts/signup/", form).status_code)
    for index in range(10):
        form = {"username": f"forged{index}", "email": "", "password1": PASSWORD, "password2": PASSWORD}
        forged.append(Browser(instance.url, address=f"10.9.8.{index}").form("/accounts/signup/", form).status_code)
    created = instance.query("from accounts.models import User; "
                             "out = User.objects.filter(username__regex=r'^(flood|forged)[0-9]+$').count()")
    limit = int(os.environ.get("COTRAIN_SIGNUP_RATE_IP", "10/hour").split("/")[0])
    return {"tried": 40, "limit": limit, "created": created, "bypasses": max(0, created - limit),
            "created_same_address": count(codes, 302, 302),
            "created_forged": count(forged, 302, 302), "refused_429": count(codes + forged, 429, 429)}


def probe_login(instance: Instance) -> dict[str, Any]:
    """100 wrong passwords, then the right one, on the site and on /admin/: a login after that is a bypass."""
    instance.query(f"from accounts.services import user_create; from accounts.models import User; "
                   f"user_create(username='victim', password='{PASSWORD}'); "
                   f"User.objects.create_superuser('root_victim', '', '{PASSWORD}'); out = 1")
    out: dict[str, Any] = {}
    for where, username, path in (("site", "victim", "/accounts/login/"), ("admin", "root_victim", "/admin/login/")):
        attacker = Browser(instance.url)
        codes = [attacker.form(path, {"username": username, "password": f"wrong-{index}"}).status_code
                 for index in range(100)]
        right = Browser(instance.url).login(username, PASSWORD, path)
        out[where] = {"wrong_tried": 100, "5xx": count(codes, 500, 599), "right_password_after": right,
                      "bypasses": int(right)}
    return out


def cheap_inputs(base: str) -> list[tuple[str, str, dict[str, Any]]]:
    nines = "9" * 5000
    return [
        ("GET", "/requests/?page=99999999999999999999", {}),
        ("GET", "/requests/?page=-1", {}),
        ("GET", "/requests/?q=%00", {}),
        ("GET", "/releases/none/files/README.md%00", {}),
        ("GET", "/api/v1/requests/?page=99999999999999999999", {}),
        ("GET", "/api/v1/requests/?limit=" + nines, {}),
        ("GET", "/releases/", {"headers": {"Range": "bytes=0-" + nines}}),
        ("GET", "/cases/99999999999999999999999/", {}),
        ("GET", "/runs/99999999999999999999999/", {}),
    ]


def probe_cheap(instance: Instance, user: Browser) -> dict[str, Any]:
    codes = {}
    for method, path, kwargs in cheap_inputs(instance.url):
        codes[f"{method} {path[:80]}"] = user.request(method, path, **kwargs).status_code
    deep = "[" * 1000 + "]" * 1000
    for label, body in (("deep JSON", '{"prompt": ' + deep + "}"), ("lone surrogate value", '{"prompt": "\\ud800"}'),
                        ("lone surrogate key", '{"\\ud800": 1}'), ("NaN", '{"prompt": NaN}')):
        codes[f"POST /api/v1/cases/ {label}"] = user.request(
            "POST", "/api/v1/cases/", data=body.encode(), headers={"Content-Type": "application/json"}).status_code
    return {"tried": len(codes), "5xx": sum(code >= 500 for code in codes.values()), "codes": codes}


def hostile_values(rng: random.Random) -> list[Any]:
    return [
        "", " ", "\x00", "\u202e", "\u2066x\u2069", "\ud800", "\x1b[31mred", "a" * 100_000, "<script>alert(1)</script>",
        "javascript:alert(1)", 0, -1, 2**63, 1e308, float("inf"), None, True, [], {}, [[[[]]]], {"a": {"b": {}}},
        "'; DROP TABLE intake_feedbackcase; --", "ℌ𝔢𝔩𝔩𝔬", "\r\n" * 1000, "ﬁ", rng.random(), "%s%s%n",
    ]


def probe_fuzz(instance: Instance, user: Browser, n: int, seed: int) -> dict[str, Any]:
    """Seeded mutations of a valid submission: no 5xx, and no case stored beyond the 201s answered."""
    rng = random.Random(seed)
    before = instance.query("from intake.models import FeedbackCase; out = FeedbackCase.objects.count()")
    codes: list[int] = []
    for index in range(n):
        body: dict[str, Any] = {**CASE, "prompt": f"fuzz {index} {CASE['prompt']}"}
        for _ in range(rng.randint(1, 3)):
            field = rng.choice([*CASE, "tags", "extra", "\ud800"])
            value = rng.choice(hostile_values(rng))
            body[field] = value
        try:
            data = json.dumps(body, allow_nan=True)
        except (TypeError, ValueError):
            continue
        codes.append(user.request("POST", "/api/v1/cases/", data=data.encode("utf-8", "surrogatepass"),
                                  headers={"Content-Type": "application/json"}).status_code)
    after = instance.query("from intake.models import FeedbackCase; out = FeedbackCase.objects.count()")
    created = count(codes, 201, 201)
    return {"tried": len(codes), "5xx": count(codes, 500, 599), "201": created, "4xx": count(codes, 400, 499),
            "partial_writes": (after - before) - created}


def delivery(payload: Any, delivery_id: str, event: str = "issues") -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, allow_nan=True).encode()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-Hub-Signature-256": signature, "X-GitHub-Event": event, "X-GitHub-Delivery": delivery_id,
                  "Content-Type": "application/json"}


def issue_payload(number: int, changes: dict[str, Any]) -> dict[str, Any]:
    issue = {"id": 900_000 + number, "number": number, "title": f"请求 {number}: 数学题",
             "body": "### 场景\n小学数学\n\n### 输入\n1+1=?\n\n### 期望输出\n2",
             "html_url": f"https://github.com/campaign/repo/issues/{number}", "state": "open",
             "user": {"login": "alice", "id": 7}, "labels": [{"name": "co-training"}],
             "created_at": "2026-11-01T00:00:00Z", "updated_at": "2026-11-02T00:00:00Z",
             "author_association": "NONE", "comments": 0, "reactions": {"+1": 1}}
    issue.update(changes)
    return {"action": "opened", "issue": issue, "repository": {"full_name": "campaign/repo", "id": 1}}


def probe_webhooks(instance: Instance, n: int, seed: int) -> dict[str, Any]:
    """Signed deliveries, realistic and fuzzed; every stored one must end processed or failed."""
    rng = random.Random(seed)
    instance.query("from ghsync.models import GithubSource; "
                   "GithubSource.objects.get_or_create(repo='campaign/repo', "
                   "defaults={'intake_labels': ['co-training']}); "
                   "out = 1")
    mutations: list[dict[str, Any]] = [
        {"body": "\x1b[31m红色\x1b[0m 的输出"}, {"html_url": "javascript:alert(document.domain)"},
        {"user": {"login": "x" * 200, "id": 8}}, {"updated_at": "2024-13-01T00:00:00Z"}, {"id": None},
        {"title": "\u202egnp.exe"}, {"body": "a" * 70_000}, {"number": "seven"}, {"labels": "co-training"},
        {"user": None}, {"body": None}, {"created_at": 12}, {"reactions": {"+1": float("nan")}},
    ]
    codes: list[int] = []
    prefix = "d" * 120
    for index in range(n):
        changes = rng.choice([{}, *mutations]) if index % 4 else rng.choice(mutations)
        payload: Any = issue_payload(index + 1, changes)
        if changes.get("id", 0) is None:
            payload["issue"].pop("id")
        delivery_id = f"{prefix}-{index:05d}" if index % 10 == 0 else f"campaign-{seed}-{index}"
        body, headers = delivery(payload, delivery_id)
        # Every 25th is sent twice, as GitHub's "Redeliver" does: the same id again.
        for _ in range(2 if index % 25 == 0 else 1):
            codes.append(requests.post(instance.url + "/github/webhook/", data=body, headers=headers,
                                       timeout=60).status_code)
    deadline, statuses = time.monotonic() + 240, {}
    while time.monotonic() < deadline:
        statuses = instance.query("from django.db.models import Count; from ghsync.models import WebhookDelivery; "
                                  "out = dict(WebhookDelivery.objects.values_list('status').annotate(n=Count('id')))")
        if not {"received", "processing"} & {key for key, value in statuses.items() if value}:
            break
        time.sleep(3)
    stored = sum(statuses.values())
    failed_without_reason = instance.query(
        "from ghsync.models import WebhookDelivery; "
        "out = WebhookDelivery.objects.filter(status='failed', error='').count() "
        "if hasattr(WebhookDelivery, 'error') else -1")
    reasons = instance.query(
        "from collections import Counter; from ghsync.models import WebhookDelivery; "
        "out = Counter(e[:70] for e in WebhookDelivery.objects.filter(status='failed').values_list('error', flat=True))"
        ".most_common(8)") if failed_without_reason >= 0 else []
    return {"sent": len(codes), "5xx": count(codes, 500, 599), "stored": stored, "by_status": statuses,
            "failure_reasons": reasons,
            "stuck": statuses.get("received", 0) + statuses.get("processing", 0),
            "failed_without_reason": failed_without_reason}


def probe_scripts(instance: Instance, maintainer: Browser) -> dict[str, Any]:
    """A maintainer's pages after the campaign: no javascript: link, no raw script tag from people's text."""
    pages = ["/github/priorities/", "/triage/", "/requests/", "/"]
    found = {}
    for page in pages:
        text = maintainer.request("GET", page).text
        found[page] = {"javascript_href": len(re.findall(r'href="\s*javascript:', text, re.I)),
                       "raw_script": len(re.findall(r"<script>alert", text, re.I))}
    headers = maintainer.request("GET", "/").headers
    return {"pages": found, "csp": headers.get("Content-Security-Policy", ""),
            "permissions_policy": headers.get("Permissions-Policy", ""),
            "referrer_policy": headers.get("Referrer-Policy", "")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--fuzz", type=int, default=2000, help="fuzzed API submissions")
    parser.add_argument("--deliveries", type=int, default=300, help="signed webhook deliveries")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cotrain-campaign-") as tmp:
        instance = Instance(args.mode, Path(tmp))
        results: dict[str, Any] = {"mode": args.mode, "date": time.strftime("%Y-%m-%d"), "seed": args.seed}
        try:
            # Phase 1, limits that fuzzing does not hit: fuzz, cheap inputs, webhooks, pages.
            instance.start(COTRAIN_SUBMIT_RATE_IP="100000/hour", COTRAIN_SIGNUP_RATE_IP="100000/hour")
            instance.query(f"from accounts.services import user_create, maintainer_ensure; "
                           f"user_create(username='fuzzer', password='{PASSWORD}'); "
                           f"maintainer_ensure(username='campaign_maint', password='{PASSWORD}'); out = 1")
            fuzzer, maintainer = Browser(instance.url), Browser(instance.url)
            assert fuzzer.login("fuzzer", PASSWORD) and maintainer.login("campaign_maint", PASSWORD)
            results["cheap_inputs"] = probe_cheap(instance, fuzzer)
            results["api_fuzz"] = probe_fuzz(instance, fuzzer, args.fuzz, args.seed)
            results["webhooks"] = probe_webhooks(instance, args.deliveries, args.seed)
            results["scripts"] = probe_scripts(instance, maintainer)
            instance.stop()
            # Phase 2, the configured limits: forged addresses, sign-up floods, password guessing.
            instance.start()
            results["forwarded_for"] = probe_forwarded_for(instance)
            results["signup"] = probe_signup(instance)
            results["login"] = probe_login(instance)
        finally:
            instance.stop()
            instance.drop()
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

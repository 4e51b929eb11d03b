"""Fuzz: thousands of generated hostile values at every form, API field and list query parameter.

Each request must end in something other than a 5xx, and a request that did not
succeed (a 4xx, or a form shown again with its errors) must leave every table as it
was. The generator is seeded: a failure names the target, the fields and the values,
and the same seed replays it.
"""

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.models import User
from curation.models import DatasetVersion
from releases.models import Release
from releases.services import release_publish
from training.models import TrainingRun

from .conftest import PASSWORD
from .loop_factories import built_version, finished_run, write_export
from .training_support import make_tiny_base

# About 80 s on two cores (2,000 requests carrying about 4,000 hostile values): marked slow.
pytestmark = [pytest.mark.django_db, pytest.mark.slow]

SEED = 20_240_512
ROUNDS = 120  # requests per target

# --- the generator -----------------------------------------------------------------------------

TEXTS = [
    "", " ", "\t\n", "0", "-1", "1e30", "1E308", "-0", "NaN", "nan", "inf", "-Infinity", "0x1f", "1_000", "１２", "²",
    "99999999999999999999", "9" * 400, "9" * 5000, "-9223372036854775809", "18446744073709551616", "1.5", ".5",
    "\x00", "a\x00b", "README.md\x00", "\x07bell", "\x1b[31mred", "\x7f", "\ufeffbom", "\ufffe", "\uffff",
    "\u202egnp.exe", "\u2066isolate\u2069", "\u200f", "\u061c", "e\u0301\u0301\u0301", "😀" * 50, "ｆｕｌｌ",
    "\ud800", "\udfff", "a\ud83d", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>', "javascript:alert(1)", "JaVaScRiPt:alert(1)", " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "//evil.example/", "http://", "https://",
    "https://example.org/ok", "ftp://example.org/", "file:///etc/passwd", "../../etc/passwd", "%00", "%2e%2e%2f",
    "' OR 1=1 --", "{{ 7*7 }}", "{% debug %}", "${7*7}", "[x](javascript:alert(1))", "```", "|a|b|", "\r\n---\r\n",
    "true", "false", "null", "[]", "{}", "[[[[[[[[[[]]]]]]]]]]", "x" * 201, "长" * 20_001, "x" * 300_000,
]
JSON_VALUES: list[object] = [
    None, True, False, 0, -1, 1.5, 10**30, -(2**63) - 1, 2**64, 1e308, [], {}, [[]], {"a": {"b": {}}},
    ["a", 1, None], {"input": "x", "output": "y"}, [{"input": "x"}],
]
# Stand-ins replaced by raw JSON text, which json.dumps cannot write (NaN, deep nesting).
RAW_JSON = ["NaN", "Infinity", "-Infinity", "[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "1e999"]


def hostile_text(rng: random.Random) -> str:
    base = rng.choice(TEXTS)
    mutation = rng.random()
    if mutation < 0.15 and len(base) < 100:
        return base * rng.randint(2, 40)
    if mutation < 0.3:
        return "正常的文字 " + base + " text"
    if mutation < 0.4:
        return "".join(rng.choice(TEXTS)[:20] for _ in range(rng.randint(2, 6)))
    return base


def hostile_json(rng: random.Random, raws: list[str]) -> object:
    pick = rng.random()
    if pick < 0.55:
        return hostile_text(rng)
    if pick < 0.75:
        return rng.choice(JSON_VALUES)
    if pick < 0.85:
        return [hostile_text(rng) for _ in range(rng.randint(0, 12))]
    raws.append(rng.choice(RAW_JSON))
    return f"__RAW_{len(raws) - 1}__"


RANGE_NUMBERS = ["", "0", "1", "-1", "9" * 5000, "99999999999999999999", "18446744073709551616", "１２", "²", " 5"]


def hostile_range(rng: random.Random) -> str:
    """A Range header that reaches the number parsing: bytes=A-B, a suffix, or several ranges."""
    first, last = rng.choice(RANGE_NUMBERS), rng.choice(RANGE_NUMBERS)
    return rng.choice([f"bytes={first}-{last}", f"bytes=-{last}", f"bytes={first}-", f"bytes={first}-{last},0-1",
                       f"BYTES={first}-{last}", f"bytes = {first} - {last}"])


def _quote(value: str) -> str:
    # surrogatepass: a lone surrogate goes out as its (invalid) UTF-8 bytes, as a hostile client can send it.
    return quote(value, safe="", errors="surrogatepass")


def form_body(data: dict[str, object]) -> str:
    pairs = []
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append(f"{_quote(key)}={_quote(str(item))}")
    return "&".join(pairs)


# --- the targets -------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    method: str  # "form", "json", "get" or "range"
    url: str
    base: dict[str, object]
    who: str = "anonymous"
    # Statuses that mean "it worked" (rows may change); None: the view always redirects, so only "no 5xx" is checked.
    success: set[int] | None = field(default_factory=lambda: {302})


COUNTED_TABLES = [
    "accounts_user", "intake_feedbackcase", "intake_caseevent", "intake_casevote", "curation_datasetbatch",
    "curation_batchcase", "curation_datasetversion", "training_trainingrun", "training_evaluation",
    "releases_release", "releases_releasefile",
]  # fmt: skip


def _row_counts() -> tuple[int, ...]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in COUNTED_TABLES))
        return cursor.fetchone()


@pytest.fixture
def world(settings, tmp_path: Path, contributor: User, maintainer: User) -> dict[str, object]:
    """A platform with something in every table: cases, a built dataset, a succeeded run, a published release."""
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.DEMO_BASE_CHECKPOINT = make_tiny_base(tmp_path / "artifacts" / "models" / "yuan2-tiny-demo")
    # Generous limits: the fuzz is about input, and a 429 would hide every later request's handling.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"submit_user": "100000/hour", "submit_ip": "100000/hour"},
    }
    settings.SIGNUP_RATE_IP = "100000/hour"
    version = built_version(author=contributor, maintainer=maintainer)
    released_run = finished_run(version=version, maintainer=maintainer)
    write_export(released_run)
    release = release_publish(run=released_run, by=maintainer, tag="fuzz-1")
    # A second succeeded run (on a second version) for the publish form.
    other = built_version(author=contributor, maintainer=maintainer, name="plan-fuzz")
    return {"version": other, "release": release, "run": finished_run(version=other, maintainer=maintainer)}


def _targets(world: dict[str, object]) -> list[Target]:
    version: DatasetVersion = world["version"]  # type: ignore[assignment]
    release: Release = world["release"]  # type: ignore[assignment]
    run: TrainingRun = world["run"]  # type: ignore[assignment]
    case = {"scenario": "数学", "prompt": "1+1=?", "bad_output": "3", "expected_output": "2", "language": "zh",
            "model_version": "Yuan2-2B", "tags_text": "math", "license_consent": "on", "idempotency_key": "k"}
    api_case = {"scenario": "数学", "prompt": "1+1=?", "bad_output": "3", "expected_output": "2", "language": "zh",
                "tags": ["math"], "model_version": "Yuan2-2B", "source_url": "https://example.org/1",
                "license_consent": True}
    recipe = {"version": version.pk, "base_checkpoint": "demo", "method": "lora", "max_steps": 8,
              "micro_batch_size": 2, "grad_accum": 1, "lr": 0.001, "warmup_steps": 1, "weight_decay": 0.0,
              "seq_len": 64, "replay_ratio": 0.0, "seed": 0, "precision": "auto", "lora_r": 4, "lora_alpha": 8.0,
              "lora_dropout": 0.0, "lora_targets": ["q_proj"], "checkpoint_every": 0, "eval_max_new_tokens": 8}
    triage = {"action": "reject", "note": "no", "duplicate_of": "1"}
    file_url = reverse("releases:file", args=[release.tag, "SHA256SUMS"])
    return [
        Target("submit form", "form", reverse("intake:submit"), case, who="contributor"),
        Target("submit API", "json", "/api/v1/cases/", api_case, who="contributor", success={200, 201}),
        Target("sign-up", "form", reverse("accounts:signup"),
               {"username": "fuzzer", "password1": PASSWORD, "password2": PASSWORD}),
        Target("triage one", "form", reverse("intake:triage_case", args=[1]), triage, who="maintainer", success=None),
        Target("triage bulk", "form", reverse("intake:triage_bulk"), {**triage, "case_ids": ["1", "2"], "query": ""},
               who="maintainer", success=None),
        Target("batch create", "form", reverse("curation:batch_create"),
               {"name": "b1", "created_before": "2030-01-01", "limit": "5", "notes": "n"}, who="maintainer"),
        Target("batch add case", "form", reverse("curation:batch_case_add", args=[1]), {"case_id": "1", "weight": "1"},
               who="maintainer", success=None),
        Target("run start", "form", reverse("training:run_start"), recipe, who="maintainer"),
        Target("publish", "form", reverse("releases:publish", args=[run.pk]), {"tag": "t1", "override_reason": ""},
               who="maintainer"),
        Target("public requests", "get", reverse("intake:requests"), {"page": "2", "status": "accepted"}),
        Target("my cases", "get", reverse("intake:my_cases"), {"before": "5", "after": "1"}, who="contributor"),
        Target("triage list", "get", reverse("intake:triage"),
               {"status": "new", "source": "web", "language": "zh", "scenario": "数学", "q": "1", "before": "9"},
               who="maintainer"),
        Target("API lists", "get", "/api/v1/cases/", {"cursor": "cD0x"}, who="contributor"),
        Target("API requests", "get", "/api/v1/requests/", {"cursor": "cD0x", "page": "1"}),
        Target("API releases", "get", "/api/v1/releases/", {"cursor": "cD0x"}),
        Target("file download", "range", file_url, {"Range": "bytes=0-9", "If-Range": "x", "If-None-Match": "y"}),
        Target("release file names", "get", f"/releases/{release.tag}/files/", {"name": "SHA256SUMS"}),
    ]


def _clients(world: dict[str, object]) -> dict[str, Client]:
    clients = {"anonymous": Client(raise_request_exception=False)}
    for who, username in (("contributor", "li_ming"), ("maintainer", "maint")):
        clients[who] = Client(raise_request_exception=False)
        clients[who].force_login(User.objects.get(username=username))
    return clients


def _mutations(rng: random.Random, target: Target) -> Iterator[tuple[dict[str, object], list[str]]]:
    for _ in range(ROUNDS):
        data, raws = dict(target.base), []
        names = [*target.base, "unknown_field"]
        for name in rng.sample(names, k=rng.randint(1, min(3, len(names)))):
            if target.method == "json":
                data[name] = hostile_json(rng, raws)
            elif name == "Range" and rng.random() < 0.7:
                data[name] = hostile_range(rng)
            elif rng.random() < 0.1:
                data[name] = [hostile_text(rng) for _ in range(rng.randint(0, 4))]
            else:
                data[name] = hostile_text(rng)
        yield data, raws


def _send(client: Client, target: Target, data: dict[str, object], raws: list[str]) -> object:
    if target.method == "json":
        body = json.dumps(data)
        for number, raw in enumerate(raws):
            body = body.replace(f'"__RAW_{number}__"', raw)
        return client.post(target.url, body, content_type="application/json")
    if target.method == "form":
        return client.post(target.url, form_body(data), content_type="application/x-www-form-urlencoded")
    if target.method == "range":
        headers = {key: str(value)[:10_000].encode("utf-8", "surrogatepass").decode("latin-1", "replace")
                   for key, value in data.items() if key != "unknown_field"}
        return client.get(target.url, headers=headers)
    if target.name == "release file names":
        return client.get(target.url + _quote(str(data["name"])).replace("%2F", "/"))
    return client.get(f"{target.url}?{form_body(data)}")


def test_no_generated_input_gets_a_5xx_or_leaves_a_partial_write(world: dict[str, object]) -> None:
    rng = random.Random(SEED)
    clients = _clients(world)
    sent = 0
    for target in _targets(world):
        client = clients[target.who]
        for data, raws in _mutations(rng, target):
            if target.name == "sign-up":
                client = Client(raise_request_exception=False)  # a successful sign-up logs the client in
            before = _row_counts()
            response = _send(client, target, data, raws)
            sent += 1
            shown = {key: (value[:80] + f"...({len(value)})" if isinstance(value, str) and len(value) > 80 else value)
                     for key, value in data.items()}
            context = f"{target.name}: {response.status_code} for {shown!r} raws={[r[:20] for r in raws]}"
            assert response.status_code < 500, context
            wrote = _row_counts() != before
            if target.success is not None and response.status_code not in target.success:
                assert not wrote, f"partial write: {context}"
            if target.method in ("get", "range"):
                assert not wrote, f"a read wrote: {context}"
    assert sent >= 2000


def test_the_generator_is_seeded_and_hostile() -> None:
    first = [hostile_text(random.Random(SEED)) for _ in range(3)]
    assert first == [hostile_text(random.Random(SEED)) for _ in range(3)]
    rng, raws = random.Random(SEED), []
    values = [hostile_json(rng, raws) for _ in range(500)]
    assert any(isinstance(v, str) and "\ud800" in v for v in values) and raws
    assert any(isinstance(v, str) and "\x00" in v for v in values)
    assert any(v is None for v in values) and any(isinstance(v, list) for v in values)

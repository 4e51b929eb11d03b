"""Issue 12, web hardening: cheap inputs get a 4xx (never a 500) and write nothing; security headers;
private run logs; bidi characters; download counting; idempotent submissions."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import User
from curation.models import DatasetVersion
from intake.models import CaseEvent, FeedbackCase
from releases.models import Release, ReleaseFile
from releases.services import release_publish
from training.models import TrainingRun

from .loop_factories import accepted_cases, built_version, finished_run, write_export

pytestmark = pytest.mark.django_db

PAYLOAD = {
    "scenario": "代码生成：Python",
    "prompt": "用Python写一个函数，判断一个字符串是不是回文。",
    "expected_output": "def is_palindrome(s: str) -> bool:\n    return s == s[::-1]",
    "license_consent": True,
}


def api_client(user: User, ip: str = "203.0.113.9") -> APIClient:
    # Authentication is test_api.py's subject; here the user is simply signed in.
    client = APIClient(REMOTE_ADDR=ip)
    client.force_authenticate(user)
    return client


def _nothing_written() -> bool:
    return FeedbackCase.objects.count() == 0 and CaseEvent.objects.count() == 0


@pytest.fixture
def artifacts(settings, tmp_path: Path) -> Path:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    return settings.ARTIFACT_ROOT


@pytest.fixture
def run_version(artifacts: Path, settings, tiny_base: Path, contributor: User, maintainer: User) -> DatasetVersion:
    settings.DEMO_BASE_CHECKPOINT = tiny_base
    return built_version(author=contributor, maintainer=maintainer)


@pytest.fixture
def release(artifacts: Path, contributor: User, maintainer: User) -> Release:
    version = built_version(author=contributor, maintainer=maintainer)
    run = finished_run(version=version, maintainer=maintainer)
    write_export(run)
    return release_publish(run=run, by=maintainer, tag="hardening-1")


# --- 5. cheap inputs: a 4xx, never a 500 ---------------------------------------------------------


@pytest.mark.parametrize("page", ["99999999999999999999", "9" * 400, "１２", "²", "-1", "0", "abc"])
def test_absurd_page_numbers_of_the_public_list_are_not_a_500(page: str) -> None:
    response = Client().get(reverse("intake:requests"), {"page": page})
    assert response.status_code in (200, 404), response.status_code


@pytest.mark.parametrize("name", ["before", "after"])
@pytest.mark.parametrize("value", ["99999999999999999999", "²", "9" * 400])
def test_absurd_cursors_of_keyset_lists_are_not_a_500(
    client_for: Callable, contributor: User, maintainer: User, name: str, value: str
) -> None:
    for user, url in ((contributor, "intake:my_cases"), (maintainer, "intake:triage")):
        response = client_for(user).get(reverse(url), {name: value})
        assert response.status_code in (200, 404), (url, response.status_code)


@pytest.mark.parametrize("header", [f"bytes=0-{'9' * 5000}", f"bytes={'9' * 5000}-", f"bytes=-{'9' * 5000}",
                                    "bytes=0-99999999999999999999"])
def test_ranges_with_absurd_numbers_get_a_416_or_the_file(release: Release, header: str) -> None:
    row = ReleaseFile.objects.get(release=release, name="SHA256SUMS")
    response = Client().get(reverse("releases:file", args=[release.tag, row.name]), HTTP_RANGE=header)
    assert response.status_code in (200, 206, 416), response.status_code


def test_a_nul_in_a_file_name_is_a_404(release: Release) -> None:
    response = Client().get(f"/releases/{release.tag}/files/README.md%00")
    assert response.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        '{"scenario": "\\ud800", "prompt": "p", "expected_output": "e", "license_consent": true}',
        '{"\\udfff": 1, "scenario": "s", "prompt": "p", "expected_output": "e", "license_consent": true}',
        '{"scenario": "s", "prompt": "p", "expected_output": "e", "license_consent": true, "tags": ["\\ud83d"]}',
    ],
)
def test_lone_surrogates_in_an_api_body_get_a_clear_400(contributor: User, body: str) -> None:
    response = api_client(contributor).post("/api/v1/cases/", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "surrogate" in response.json()["detail"]
    assert _nothing_written()


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_gets_a_clear_400(contributor: User, depth: int) -> None:
    body = "[" * depth + "]" * depth
    response = api_client(contributor).post("/api/v1/cases/", body, content_type="application/json")
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]
    nested_value = json.dumps({**PAYLOAD, "tags": []})[:-1] + ', "extra": ' + "[" * 1000 + "]" * 1000 + "}"
    response = api_client(contributor).post("/api/v1/cases/", nested_value, content_type="application/json")
    assert response.status_code == 400
    assert _nothing_written()


def test_import_reports_an_impossible_date_by_line_and_imports_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = {"source": "web", "status": "new", "scenario": "数学", "prompt": "1+1?", "expected_output": "2",
            "language": "zh", "created_at": "2024-01-01T00:00:00", "license_consent": True}
    lines = [good, {**good, "prompt": "2+2?", "created_at": "2024-13-01T00:00:00"},
             {**good, "prompt": "3+3?", "created_at": "2024-02-30T25:00:00"}]
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    with pytest.raises(CommandError, match="2 bad line"):
        call_command("import_cases", str(path))
    errors = capsys.readouterr().err
    assert "line 2:" in errors and "2024-13-01T00:00:00" in errors and "line 3:" in errors
    assert "Traceback" not in errors
    assert _nothing_written()


def _run_form(version_pk: int, **changes: object) -> dict:
    data = {"version": version_pk, "base_checkpoint": "demo", "method": "lora", "max_steps": 8,
            "micro_batch_size": 2, "grad_accum": 1, "lr": 0.001, "warmup_steps": 1, "weight_decay": 0.0,
            "seq_len": 64, "replay_ratio": 0.0, "seed": 0, "precision": "auto", "lora_r": 4, "lora_alpha": 8.0,
            "lora_dropout": 0.0, "lora_targets": ["q_proj"], "checkpoint_every": 0, "eval_max_new_tokens": 8}
    return {**data, **changes}


# Values a maintainer's typo (or a script) can send; each was accepted and queued before.
ABSURD_RECIPE_VALUES = [
    ("max_steps", "1e30"), ("max_steps", str(10**30)), ("max_steps", "10000001"), ("micro_batch_size", "100000"),
    ("grad_accum", "99999999"), ("seq_len", str(2**40)), ("lr", "1e30"), ("lr", "nan"), ("lr", "inf"),
    ("warmup_steps", str(10**20)), ("seed", str(2**70)), ("lora_r", "100000"), ("lora_alpha", "1e300"),
    ("checkpoint_every", str(10**12)), ("eval_max_new_tokens", "10000000"), ("weight_decay", "1e30"),
]


def test_run_recipe_fields_have_upper_bounds(
    run_version: DatasetVersion, client_for: Callable, maintainer: User
) -> None:
    client = client_for(maintainer)
    for field, value in ABSURD_RECIPE_VALUES:
        response = client.post(reverse("training:run_start"), _run_form(run_version.pk, **{field: value}))
        assert response.status_code == 400, (field, value)
        assert not TrainingRun.objects.exists(), (field, value)
    # The bounds sit far above any real run: the largest sane values still queue.
    response = client.post(reverse("training:run_start"), _run_form(run_version.pk, max_steps=1_000_000))
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert TrainingRun.objects.get().recipe["max_steps"] == 1_000_000


@pytest.mark.parametrize("value", [str(10**30), "100001", "1e30"])
def test_batch_limits_have_an_upper_bound(
    client_for: Callable, contributor: User, maintainer: User, value: str
) -> None:
    from curation.models import DatasetBatch

    accepted_cases(author=contributor, maintainer=maintainer, count=1)
    response = client_for(maintainer).post(reverse("curation:batch_create"), {"limit": value})
    assert response.status_code in (200, 400)
    assert not DatasetBatch.objects.exists()


@pytest.mark.parametrize("value", [str(10**30), "1e300", "nan", "inf", "1001"])
def test_batch_weights_have_an_upper_bound(
    client_for: Callable, contributor: User, maintainer: User, value: str
) -> None:
    from curation.models import BatchCase
    from curation.services import batch_create

    first, second = accepted_cases(author=contributor, maintainer=maintainer, count=2)
    batch = batch_create(by=maintainer, name="bounds", limit=1)
    url = reverse("curation:batch_case_add", args=[batch.pk])
    client_for(maintainer).post(url, {"case_id": second.pk, "weight": value})
    assert client_for(maintainer).post(url, {"case_id": str(10**30), "weight": "1"}).status_code == 302
    assert list(BatchCase.objects.values_list("case_id", flat=True)) == [first.pk]



def test_import_reports_a_too_deeply_nested_line_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(CommandError, match="1 bad line"):
        call_command("import_cases", str(path))
    assert _nothing_written()


# --- 7. cards carry people's text as text -------------------------------------------------------

HOSTILE_SCENARIOS = [
    "<script>alert(1)</script> 脚本",
    "<img src=x onerror=alert(1)> 图片",
    "[x](javascript:alert(1)) 链接 ![y](javascript:alert(2))",
    "*a* _b_ | c | `d` ~~e~~ <javascript:alert(3)> &lt;script&gt; \\",
    "line\n<script>alert(4)</script>\n```\n<svg onload=alert(5)>",
]


def _rendered(markdown: str) -> str:
    from markdown_it import MarkdownIt

    # CommonMark with raw HTML allowed, as the Hub and GitHub render cards; plus GFM tables and strikethrough.
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def _assert_inert(html: str) -> None:
    import re

    assert "<script" not in html.lower()
    assert "<img" not in html.lower() and "<svg" not in html.lower()
    assert not re.search(r"<[^>]*\son\w+\s*=", html, re.IGNORECASE), html
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", html, re.IGNORECASE), html


def test_cards_render_people_s_text_as_text(
    artifacts: Path, contributor: User, maintainer: User, make_case: Callable
) -> None:
    from curation.selectors import dataset_version_abspath
    from intake.models import CaseStatus
    from intake.services import case_transition
    from releases.selectors import release_abspath
    from training.models import EvaluationStatus

    hostile = []
    # Five different requests (copies of one would be dropped as near-duplicates, taking their scenarios along).
    prompts = ["中国的首都是哪里？", "Name a prime number greater than ten.", "把“你好”翻译成英文。",
               "写一句关于春天的诗。", "What colour is the sky on a clear day?"]
    for scenario, prompt in zip(HOSTILE_SCENARIOS, prompts, strict=True):
        case = case_transition(case=make_case(scenario=scenario, prompt=prompt), to_status=CaseStatus.ACCEPTED,
                               actor=maintainer)
        hostile.append(case)
    # A link stored before URLs were checked at the door.
    FeedbackCase.objects.filter(pk=hostile[0].pk).update(source_url="javascript:alert(6)")
    FeedbackCase.objects.filter(pk=hostile[1].pk).update(source_url="https://example.org/a b<script>")
    version = built_version(author=contributor, maintainer=maintainer)
    run = finished_run(version=version, maintainer=maintainer, evaluation=EvaluationStatus.BLOCKED)
    write_export(run)
    reason = "Reviewed by hand.\n```\n<script>alert(7)</script>\n````\n[z](javascript:alert(8))"
    release = release_publish(run=run, by=maintainer, tag="hostile-1", override_reason=reason)

    dataset_card = (dataset_version_abspath(version=version) / "README.md").read_text(encoding="utf-8")
    model_card = (release_abspath(release=release) / "README.md").read_text(encoding="utf-8")
    for card in (dataset_card, model_card):
        _assert_inert(_rendered(card))
        assert "{%" not in card and "&amp;lt;" not in card.replace("&amp;lt;script&amp;gt;", "")
    html = _rendered(model_card)
    # Still readable: the scenarios read as written, as link texts to their case pages.
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 脚本" in html
    assert "[x](javascript:alert(1)) 链接" in html and "&amp;lt;script&amp;gt;" in html
    assert f'href="{django_settings.SITE_URL}/cases/{hostile[0].pk}/"' in html
    assert "Reviewed by hand." in html and "&lt;script&gt;alert(7)&lt;/script&gt;" in html
    assert "javascript:alert(6)" not in model_card
    assert "https://example.org/a%20b%3Cscript%3E" in model_card
    table = _rendered(dataset_card)
    assert "<td>*a* _b_ | c | `d` ~~e~~ &lt;javascript:alert(3)&gt; &amp;lt;script&amp;gt; \\</td>" in table


# --- 9. download counts, bidi characters, idempotent submissions ---------------------------------


def test_one_byte_ranges_do_not_inflate_the_download_count(release: Release, maintainer: User) -> None:
    row = ReleaseFile.objects.get(release=release, name="merged/model.safetensors")
    url = reverse("releases:file", args=[release.tag, row.name])
    client = Client(REMOTE_ADDR="198.51.100.1")
    for _ in range(20):
        assert client.get(url, HTTP_RANGE="bytes=0-0").status_code == 206
    assert client.get(url).status_code == 200
    row.refresh_from_db()
    assert row.download_count == 1
    # Another address, and another account at the first address, are other downloads.
    assert Client(REMOTE_ADDR="198.51.100.2").get(url, HTTP_RANGE="bytes=5-9").status_code == 206
    signed_in = Client(REMOTE_ADDR="198.51.100.1")
    signed_in.force_login(maintainer)
    assert signed_in.get(url, HTTP_RANGE="bytes=0-0").status_code == 206
    row.refresh_from_db()
    assert row.download_count == 3


BIDI = ["\u202e", "\u202a", "\u202b", "\u202c", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069"]


@pytest.mark.parametrize("char", BIDI)
def test_bidi_override_characters_are_refused_on_the_web_form(
    client_for: Callable, contributor: User, char: str
) -> None:
    form = {"scenario": "数学", "prompt": f"1+1{char}=?", "expected_output": "2", "language": "zh",
            "license_consent": "on"}
    response = client_for(contributor).post(reverse("intake:submit"), form)
    assert response.status_code == 200 and "bidirectional control character" in response.content.decode()
    assert _nothing_written()


@pytest.mark.parametrize("field", ["scenario", "prompt", "expected_output", "bad_output", "model_version", "tags"])
def test_bidi_override_characters_are_refused_by_the_api(contributor: User, field: str) -> None:
    value = ["ok\u202eko"] if field == "tags" else "abc\u2067def"
    response = api_client(contributor).post("/api/v1/cases/", {**PAYLOAD, field: value}, format="json")
    assert response.status_code == 400
    assert "bidirectional" in json.dumps(response.json())
    assert _nothing_written()


def test_bidi_override_characters_are_refused_in_maintainer_notes(
    client_for: Callable, maintainer: User, make_case: Callable
) -> None:
    from curation.models import DatasetBatch

    case = make_case()
    client = client_for(maintainer)
    client.post(reverse("intake:triage_case", args=[case.pk]), {"action": "reject", "note": "spam\u202e"})
    case.refresh_from_db()
    assert case.status == "new"
    response = client.post(reverse("curation:batch_create"), {"notes": "plan\u2066"})
    assert "bidirectional" in response.content.decode() and not DatasetBatch.objects.exists()


def test_plain_direction_marks_stay_allowed(client_for: Callable, contributor: User) -> None:
    # U+200F (a right-to-left mark) only sets a direction: real Arabic and Hebrew text carries it.
    response = api_client(contributor).post("/api/v1/cases/", {**PAYLOAD, "prompt": "שלום\u200f 1+1?"}, format="json")
    assert response.status_code == 201


# --- 8. run pages: visitors see status and progress, maintainers the internals -------------------

SECRET_PATH = "/srv/cotrain/artifacts/runs/7"


@pytest.fixture
def failed_run(artifacts: Path, contributor: User, maintainer: User) -> TrainingRun:
    from training.models import RunStatus

    run = finished_run(version=built_version(author=contributor, maintainer=maintainer), maintainer=maintainer,
                       evaluation=None)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, base_checkpoint="/srv/models/yuan2-2b-secret", step=3, total_steps=8, last_loss=2.5,
        log_tail=f"python -m trainer train --config {SECRET_PATH}/run.yaml\nTraceback (most recent call last)",
        error=f"FileNotFoundError: {SECRET_PATH}/data/train.arrow",
    )
    return TrainingRun.objects.get(pk=run.pk)


@pytest.mark.parametrize("who", ["anonymous", "contributor"])
def test_visitors_see_status_and_progress_but_no_logs_or_paths(
    failed_run: TrainingRun, client_for: Callable, contributor: User, who: str
) -> None:
    client = Client() if who == "anonymous" else client_for(contributor)
    page = client.get(reverse("training:run_detail", args=[failed_run.pk])).content.decode()
    assert 'id="run-status"' in page and "failed" in page and 'id="run-step">3<' in page and "2.5000" in page
    assert "The run failed; the maintainers have the details." in page
    for secret in (SECRET_PATH, "/srv/models", "Traceback", "python -m trainer", 'id="run-log"'):
        assert secret not in page, secret
    progress = client.get(reverse("training:run_progress", args=[failed_run.pk])).json()
    assert progress["status"] == "failed" and progress["step"] == 3 and progress["last_loss"] == 2.5
    assert "log_tail" not in progress and "error" not in progress
    assert SECRET_PATH not in json.dumps(progress)


def test_maintainers_see_the_log_the_error_and_the_paths(
    failed_run: TrainingRun, client_for: Callable, maintainer: User
) -> None:
    client = client_for(maintainer)
    page = client.get(reverse("training:run_detail", args=[failed_run.pk])).content.decode()
    assert f"{SECRET_PATH}/data/train.arrow" in page and "python -m trainer" in page and "/srv/models" in page
    progress = client.get(reverse("training:run_progress", args=[failed_run.pk])).json()
    assert progress["log_tail"].startswith("python -m trainer") and SECRET_PATH in progress["error"]


# --- 6. security headers; no inline script anywhere ------------------------------------------------


def test_pages_send_a_strict_content_security_policy(release: Release, make_case: Callable) -> None:
    client = Client()
    for url in ("/", reverse("intake:requests"), reverse("releases:detail", args=[release.tag]),
                reverse("accounts:login"), "/api/v1/requests/", "/no-such-page/"):
        response = client.get(url)
        policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";"))
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'", url
        assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'", url
        assert policy["base-uri"] == "'self'" and policy["form-action"] == "'self'", url
        assert "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]
        assert response["Referrer-Policy"] == "same-origin"


def test_api_docs_work_under_the_policy(client: Client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200 and "script-src 'self';" in page["Content-Security-Policy"]
    html = page.content.decode()
    assert "<script>" not in html and "?script=" in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


def test_templates_hold_no_inline_script_handler_or_style() -> None:
    import re

    from .conftest import REPO_ROOT

    for path in (REPO_ROOT / "templates").rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text), path
        assert not re.search(r"\son[a-z]+\s*=", text, re.IGNORECASE), path
        assert not re.search(r"<style|\sstyle\s*=|javascript:", text, re.IGNORECASE), path


def test_an_api_retry_with_the_same_idempotency_key_returns_the_first_case(contributor: User) -> None:
    client = api_client(contributor)
    first = client.post("/api/v1/cases/", PAYLOAD, format="json", HTTP_IDEMPOTENCY_KEY="4f1c-retry-1")
    assert first.status_code == 201
    again = client.post("/api/v1/cases/", PAYLOAD, format="json", HTTP_IDEMPOTENCY_KEY="4f1c-retry-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert FeedbackCase.objects.count() == 1 and CaseEvent.objects.count() == 1
    # Without a key, or with another one, a submission is a new case.
    assert client.post("/api/v1/cases/", PAYLOAD, format="json").status_code == 201
    assert client.post("/api/v1/cases/", PAYLOAD, format="json", HTTP_IDEMPOTENCY_KEY="other").status_code == 201
    assert FeedbackCase.objects.count() == 3


def test_idempotency_keys_are_per_author_and_refuse_other_content(contributor: User, other_contributor: User) -> None:
    key = {"HTTP_IDEMPOTENCY_KEY": "same-key"}
    assert api_client(contributor).post("/api/v1/cases/", PAYLOAD, format="json", **key).status_code == 201
    assert api_client(other_contributor).post("/api/v1/cases/", PAYLOAD, format="json", **key).status_code == 201
    changed = api_client(contributor).post("/api/v1/cases/", {**PAYLOAD, "prompt": "另一个问题"}, format="json", **key)
    assert changed.status_code == 400 and "already used" in json.dumps(changed.json(), ensure_ascii=False)
    bad = api_client(contributor).post("/api/v1/cases/", PAYLOAD, format="json", HTTP_IDEMPOTENCY_KEY="x" * 101)
    assert bad.status_code == 400
    assert FeedbackCase.objects.count() == 2


def test_an_expired_idempotency_key_names_a_new_submission(contributor: User) -> None:
    from datetime import timedelta

    from django.utils import timezone

    client = api_client(contributor)
    first = client.post("/api/v1/cases/", PAYLOAD, format="json", HTTP_IDEMPOTENCY_KEY="k1").json()
    FeedbackCase.objects.filter(pk=first["id"]).update(created_at=timezone.now() - timedelta(hours=25))
    later = client.post("/api/v1/cases/", PAYLOAD, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert later.status_code == 201 and later.json()["id"] != first["id"]


def test_the_web_form_sent_twice_creates_one_case(client_for: Callable, contributor: User) -> None:
    import re

    client = client_for(contributor)
    page = client.get(reverse("intake:submit")).content.decode()
    key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page).group(1)
    assert key not in client.get(reverse("intake:submit")).content.decode()  # a new key per form shown
    form = {"scenario": "数学", "prompt": "1+1=?", "expected_output": "2", "language": "zh", "license_consent": "on",
            "idempotency_key": key}
    first = client.post(reverse("intake:submit"), form)
    second = client.post(reverse("intake:submit"), form, follow=True)
    case = FeedbackCase.objects.get()
    assert first.url == second.redirect_chain[0][0] == reverse("intake:case_detail", args=[case.pk])
    assert "already submitted" in second.content.decode()

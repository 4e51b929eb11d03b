"""The REST API: token auth, submission with validation, own cases, accepted requests, schema, limits."""

import json
from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client, override_settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import api_token_create, user_create
from intake.models import CaseEvent, CaseStatus, FeedbackCase
from intake.services import case_transition

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

# What a chat UI's "bad answer" button sends.
PAYLOAD = {
    "scenario": "代码生成：Python",
    "prompt": "用Python写一个函数，判断一个字符串是不是回文（忽略大小写和空格）。",
    "bad_output": "def is_palindrome(s):\n    return s == s[::-1]",
    "expected_output": 'def is_palindrome(s: str) -> bool:\n    t = "".join(s.split()).lower()\n    return t == t[::-1]',  # noqa: E501
    "language": "zh",
    "tags": ["code", "python"],
    "model_version": "Yuan2-2B-Mars-hf",
    "source_url": "https://chat.example.org/conversations/42",
    "license_consent": True,
}


def token_client(user: User, ip: str = "203.0.113.7") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    return client


def test_submit_with_a_token_creates_an_api_case(contributor: User) -> None:
    response = token_client(contributor).post("/api/v1/cases/", PAYLOAD, format="json")
    assert response.status_code == 201, response.content
    case = FeedbackCase.objects.get(pk=response.json()["id"])
    assert (case.source, case.author, case.status, case.tags) == ("api", contributor, "new", ["code", "python"])
    assert case.source_url == PAYLOAD["source_url"]
    assert response.json()["uid"] == str(case.uid)


def test_submit_without_a_token_is_refused() -> None:
    response = APIClient().post("/api/v1/cases/", PAYLOAD, format="json")
    assert response.status_code == 401
    assert FeedbackCase.objects.count() == 0


def test_a_wrong_token_is_refused(contributor: User) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert client.post("/api/v1/cases/", PAYLOAD, format="json").status_code == 401


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"expected_output": ""}, "expected_output", "may not be blank"),
        ({"expected_output": " \n\t "}, "expected_output", "cannot be empty"),
        ({"prompt": "x" * 20_001}, "prompt", "no more than 20000"),
        ({"prompt": "含有\x07响铃字符"}, "prompt", "control character"),
        ({"scenario": "nul\x00"}, "scenario", "Null characters are not allowed"),
        ({"prompt": 12345}, "prompt", "Must be a string"),
        ({"tags": "math"}, "tags", "list"),
        ({"tags": ["ok", 3]}, "tags", "Must be a string"),
        ({"language": "fr"}, "language", "not a valid choice"),
        ({"license_consent": "yes"}, "license_consent", "JSON value true"),
        ({"license_consent": False}, "license_consent", "data license"),
        ({"source_url": "javascript:alert(1)"}, "source_url", "valid URL"),
        ({"expected": "typo"}, "expected", "Unknown field"),
    ],
)
def test_bad_fields_get_a_clear_400_and_nothing_is_written(
    contributor: User, changes: dict, field: str, message: str
) -> None:
    response = token_client(contributor).post("/api/v1/cases/", {**PAYLOAD, **changes}, format="json")
    assert response.status_code == 400
    assert message in json.dumps(response.json()[field], ensure_ascii=False)
    assert FeedbackCase.objects.count() == 0 and CaseEvent.objects.count() == 0


def test_missing_fields_are_named(contributor: User) -> None:
    response = token_client(contributor).post("/api/v1/cases/", {"scenario": "数学"}, format="json")
    assert response.status_code == 400
    assert {"prompt", "expected_output", "license_consent"} <= set(response.json())


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '"just a string"'])
def test_malformed_or_non_object_bodies_get_a_400(contributor: User, body: str) -> None:
    response = token_client(contributor).post("/api/v1/cases/", body, content_type="application/json")
    assert response.status_code == 400
    assert FeedbackCase.objects.count() == 0


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000)
def test_oversized_body_gets_a_clear_400(contributor: User) -> None:
    body = json.dumps({**PAYLOAD, "bad_output": "长" * 6000})
    response = token_client(contributor).post("/api/v1/cases/", body, content_type="application/json")
    assert response.status_code == 400
    assert "too large" in response.json()["detail"]
    assert FeedbackCase.objects.count() == 0


def test_list_and_read_only_your_own_cases(contributor: User, other_contributor: User) -> None:
    mine = token_client(contributor).post("/api/v1/cases/", PAYLOAD, format="json").json()["id"]
    theirs = token_client(other_contributor).post("/api/v1/cases/", PAYLOAD, format="json").json()["id"]
    listing = token_client(contributor).get("/api/v1/cases/").json()
    assert [row["id"] for row in listing["results"]] == [mine]
    assert token_client(contributor).get(f"/api/v1/cases/{mine}/").status_code == 200
    assert token_client(contributor).get(f"/api/v1/cases/{theirs}/").status_code == 404


def test_accepted_requests_are_public_and_sorted_by_votes(
    make_case: Callable, maintainer: User, contributor: User
) -> None:
    quiet, popular, pending = make_case(scenario="冷门需求"), make_case(scenario="热门需求"), make_case()
    for case in (quiet, popular):
        case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    from intake.services import case_vote

    case_vote(case=popular, user=contributor)
    rows = APIClient().get("/api/v1/requests/").json()["results"]
    assert [row["id"] for row in rows] == [popular.pk, quiet.pk]
    assert rows[0]["vote_count"] == 1 and "author" not in rows[0]
    assert pending.pk not in [row["id"] for row in rows]


def test_openapi_schema_is_served() -> None:
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert {"/api/v1/cases/", "/api/v1/cases/{id}/", "/api/v1/requests/"} <= set(schema["paths"])
    assert "expected_output" in json.dumps(schema["components"]["schemas"]["CaseSubmit"])


@override_settings(
    REST_FRAMEWORK={
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"submit_user": "3/hour", "submit_ip": "5/hour"},
    }
)
def test_submission_is_rate_limited_per_user_and_per_ip(contributor: User) -> None:
    client = token_client(contributor, ip="198.51.100.1")
    codes = [client.post("/api/v1/cases/", PAYLOAD, format="json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    # Reading is not limited.
    assert client.get("/api/v1/cases/").status_code == 200
    # From one address, new accounts only get the rest of that address's allowance
    # (every attempt counts against the address, the refused 4th one included).
    users = [user_create(username=f"flood{i}", password=PASSWORD) for i in range(2)]
    flood = [token_client(user, ip="198.51.100.1") for user in users]
    codes = [client.post("/api/v1/cases/", PAYLOAD, format="json").status_code for client in flood]
    assert codes == [201, 429]
    assert FeedbackCase.objects.count() == 4
    # Another address is not affected.
    other = token_client(users[1], ip="192.0.2.50").post("/api/v1/cases/", PAYLOAD, format="json")
    assert other.status_code == 201


def test_api_docs_page_loads_its_scripts_locally_not_from_a_cdn(client) -> None:
    page = client.get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar" in page
    assert "cdn.jsdelivr" not in page and "unpkg.com" not in page

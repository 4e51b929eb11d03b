"""Web views: sign-up, submit, my cases, public list, triage; permissions on every view."""

from collections.abc import Callable

import pytest
from django.conf import settings
from django.test import Client, override_settings

from accounts.models import User
from accounts.services import user_create
from intake.models import CaseEvent, CaseStatus, FeedbackCase
from intake.services import case_transition

from .conftest import MATH_CASE, PASSWORD

pytestmark = pytest.mark.django_db

FORM = {
    "scenario": MATH_CASE.scenario,
    "prompt": MATH_CASE.prompt,
    "bad_output": MATH_CASE.bad_output,
    "expected_output": MATH_CASE.expected_output,
    "language": "zh",
    "model_version": "Yuan2-2B-Mars-hf",
    "tags_text": "math，应用题",
    "license_consent": "on",
}


def test_signup_creates_a_contributor_and_logs_in() -> None:
    client = Client()
    data = {"username": "wang_fang", "email": "", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post("/accounts/signup/", data)
    assert response.status_code == 302 and response["Location"] == "/submit/"
    user = User.objects.get(username="wang_fang")
    assert list(user.groups.values_list("name", flat=True)) == ["contributor"]
    assert client.get("/submit/").status_code == 200


def test_submit_form_explains_fields_and_shows_an_example(client_for: Callable, contributor: User) -> None:
    page = client_for(contributor).get("/submit/").content.decode()
    for text in ("场景需求", "输入", "输出", "Example", "小明还剩10个苹果", "CC-BY-4.0"):
        assert text in page


def test_submit_creates_a_case_and_shows_it_with_history(client_for: Callable, contributor: User) -> None:
    client = client_for(contributor)
    response = client.post("/submit/", FORM)
    case = FeedbackCase.objects.get()
    assert response["Location"] == f"/cases/{case.pk}/"
    assert case.tags == ["math", "应用题"] and case.source == "web"
    page = client.get(f"/cases/{case.pk}/").content.decode()
    assert "History" in page and "created" in page
    assert f"#{case.pk}" in client.get("/my-cases/").content.decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expected_output": "  "}, "This field is required"),
        ({"prompt": "a\x01b"}, "control character"),
        ({"license_consent": ""}, "This field is required"),
        ({"prompt": "x" * 20_001}, "at most 20000"),
        ({"tags_text": ",".join(f"t{i}" for i in range(11))}, "At most 10 tags"),
    ],
)
def test_submit_form_errors_are_clear_and_nothing_is_written(
    client_for: Callable, contributor: User, changes: dict, message: str
) -> None:
    response = client_for(contributor).post("/submit/", {**FORM, **changes})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert FeedbackCase.objects.count() == 0


@override_settings(
    REST_FRAMEWORK={
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"submit_user": "3/hour", "submit_ip": "5/hour"},
    }
)
def test_submit_form_is_rate_limited_per_user_and_per_ip(client_for: Callable, contributor: User) -> None:
    client = client_for(contributor)
    responses = [client.post("/submit/", FORM, REMOTE_ADDR="198.51.100.1") for _ in range(4)]
    assert [response.status_code for response in responses] == [302, 302, 302, 429]
    refused = responses[-1].content.decode()
    assert "Too many submissions" in refused and "nothing was saved" in refused and "minute" in refused
    assert MATH_CASE.prompt in refused  # what they typed is still on the page
    assert FeedbackCase.objects.count() == 3 and CaseEvent.objects.count() == 3
    # Opening the form is not limited; the API draws on the same allowance.
    assert client.get("/submit/", REMOTE_ADDR="198.51.100.1").status_code == 200
    api_case = {**FORM, "tags": ["math"], "license_consent": True}
    del api_case["tags_text"]
    api = client.post("/api/v1/cases/", api_case, content_type="application/json", REMOTE_ADDR="192.0.2.9")
    assert api.status_code == 429
    # From one address, new accounts only get the rest of that address's allowance
    # (every attempt counts against the address, the refused 4th one included).
    flood = [client_for(user_create(username=f"flood{i}", password=PASSWORD)) for i in range(2)]
    codes = [other.post("/submit/", FORM, REMOTE_ADDR="198.51.100.1").status_code for other in flood]
    assert codes == [302, 429]
    assert flood[1].post("/submit/", FORM, REMOTE_ADDR="192.0.2.50").status_code == 302
    assert FeedbackCase.objects.count() == 5


def test_maintainer_triages_from_the_case_page(make_case: Callable, maintainer: User, client_for: Callable) -> None:
    case = make_case()
    client = client_for(maintainer)
    client.post(f"/cases/{case.pk}/triage/", {"action": "reject", "note": ""})
    case.refresh_from_db()
    assert case.status == "new"  # a rejection needs a reason
    client.post(f"/cases/{case.pk}/triage/", {"action": "needs-info", "note": "请补充模型版本"})
    case.refresh_from_db()
    assert (case.status, case.status_reason) == ("needs-info", "请补充模型版本")


def test_triage_pages_refuse_to_accept_a_case_still_waiting_for_its_example(
    make_case: Callable, maintainer: User, client_for: Callable
) -> None:
    from intake.selectors import EXAMPLE_PLACEHOLDERS

    waiting = make_case(expected_output=next(iter(EXAMPLE_PLACEHOLDERS)))
    ready = make_case()
    client = client_for(maintainer)
    page = client.post(f"/cases/{waiting.pk}/triage/", {"action": "accept", "note": ""}, follow=True)
    assert "expected output is still missing" in page.content.decode()
    page = client.post(
        "/triage/bulk/", {"case_ids": [ready.pk, waiting.pk], "action": "accept", "query": ""}, follow=True
    )
    assert f"Nothing was changed: Case #{waiting.pk} cannot be accepted" in page.content.decode()
    assert not FeedbackCase.objects.filter(status="accepted").exists()


def test_author_answers_an_info_request(
    make_case: Callable, maintainer: User, contributor: User, client_for: Callable
) -> None:
    case = make_case()
    case_transition(case=case, to_status=CaseStatus.NEEDS_INFO, actor=maintainer, note="哪个模型版本？")
    client = client_for(contributor)
    assert "哪个模型版本" in client.get(f"/cases/{case.pk}/answer/").content.decode()
    client.post(f"/cases/{case.pk}/answer/", {**FORM, "model_version": "Yuan2-102B-hf"})
    case.refresh_from_db()
    assert (case.status, case.model_version) == ("new", "Yuan2-102B-hf")


def test_bulk_triage_with_filters_kept(make_case: Callable, maintainer: User, client_for: Callable) -> None:
    cases = [make_case() for _ in range(3)]
    client = client_for(maintainer)
    response = client.post(
        "/triage/bulk/", {"case_ids": [c.pk for c in cases[:2]], "action": "accept", "query": "status=new"}
    )
    assert response["Location"] == "/triage/?status=new"
    assert sorted(FeedbackCase.objects.filter(status="accepted").values_list("pk", flat=True)) == [
        cases[0].pk,
        cases[1].pk,
    ]
    page = client.get("/triage/?status=new").content.decode()
    # Only the new case is a row; the accepted ones may appear as its likely duplicates (they are copies).
    rows = lambda pk: f'name="case_ids" value="{pk}"' in page  # noqa: E731
    assert rows(cases[2].pk) and not rows(cases[0].pk) and not rows(cases[1].pk)
    assert f'/cases/{cases[2].pk}/duplicate-of/{cases[0].pk}/' in page


def test_triage_filters_and_text_search(make_case: Callable, maintainer: User, client_for: Callable) -> None:
    sql = make_case(scenario="SQL生成", prompt="写一条SQL查询订单总额", language="zh")
    en = make_case(scenario="Unit conversion", prompt="How many seconds in 3.5 hours?", language="en")
    client = client_for(maintainer)
    assert_only = lambda url, case: (  # noqa: E731
        (page := client.get(url).content.decode())
        and f"/cases/{case.pk}/" in page
        and page.count('name="case_ids"') == 1
    )
    assert assert_only("/triage/?language=en", en)
    assert assert_only("/triage/?scenario=SQL生成", sql)
    assert assert_only("/triage/?q=seconds", en)
    assert assert_only("/triage/?q=订单", sql)


def test_public_list_shows_accepted_requests_and_votes(
    make_case: Callable, maintainer: User, other_contributor: User, client_for: Callable
) -> None:
    accepted, pending = make_case(scenario="热门需求"), make_case(scenario="未审核需求")
    case_transition(case=accepted, to_status=CaseStatus.ACCEPTED, actor=maintainer)
    page = Client().get("/requests/").content.decode()
    assert "热门需求" in page and "未审核需求" not in page
    client = client_for(other_contributor)
    client.post(f"/cases/{accepted.pk}/vote/", {"vote": "add", "next": "/requests/"})
    client.post(f"/cases/{accepted.pk}/vote/", {"vote": "add", "next": "/requests/"})
    accepted.refresh_from_db()
    assert accepted.vote_count == 1
    client.post(f"/cases/{pending.pk}/vote/", {"vote": "add"})
    pending.refresh_from_db()
    assert pending.vote_count == 0


# Every view, and who may use it: anonymous (redirect to login or 404), contributor, maintainer.
PERMISSION_MATRIX = [
    ("get", "/", 200, 200, 200),
    ("get", "/requests/", 200, 200, 200),
    ("get", "/accounts/signup/", 200, 302, 302),
    ("get", "/accounts/token/", 302, 200, 200),
    ("get", "/submit/", 302, 200, 200),
    ("get", "/my-cases/", 302, 200, 200),
    ("get", "/triage/", 302, 403, 200),
    ("post", "/triage/bulk/", 302, 403, 302),
    ("get", "/cases/{other}/", 404, 404, 200),
    ("post", "/cases/{other}/triage/", 302, 403, 302),
    ("post", "/cases/{other}/withdraw/", 302, 404, 403),
    ("get", "/cases/{other}/answer/", 302, 404, 404),
    ("post", "/cases/{other}/vote/", 302, 404, 302),
]


@pytest.mark.parametrize(("method", "url", "anonymous", "as_contributor", "as_maintainer"), PERMISSION_MATRIX)
def test_permissions_on_every_view(
    make_case: Callable,
    other_contributor: User,
    contributor: User,
    maintainer: User,
    client_for: Callable,
    method: str,
    url: str,
    anonymous: int,
    as_contributor: int,
    as_maintainer: int,
) -> None:
    other_case = make_case(author=other_contributor)  # a `new` case of someone else: private
    url = url.format(other=other_case.pk)
    for client, expected in (
        (Client(), anonymous),
        (client_for(contributor), as_contributor),
        (client_for(maintainer), as_maintainer),
    ):
        response = getattr(client, method)(url, {"action": "accept"} if method == "post" else None)
        assert response.status_code == expected, (url, response.status_code, expected)
    other_case.refresh_from_db()
    # Neither the anonymous visitor nor the contributor changed it; only the maintainer's triage did.
    assert other_case.status in {"new", "accepted"}
    assert other_case.events.exclude(actor=maintainer).exclude(action="created").count() == 0


def test_anonymous_users_are_sent_to_login(make_case: Callable) -> None:
    response = Client().get("/triage/")
    assert response["Location"].startswith("/accounts/login/?next=/triage/")

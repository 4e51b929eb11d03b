"""Personal data people type is masked on public pages and the public API, and scrubbed from dataset versions."""

import json
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from curation.models import DatasetVersion
from curation.selectors import dataset_version_abspath
from curation.services import batch_approve, batch_create, dataset_version_build
from intake.models import CaseStatus, FeedbackCase
from intake.services import CaseInput, case_create, case_transition

from .loop_factories import accepted_cases

pytestmark = pytest.mark.django_db

PHONE, EMAIL, ID = "13812345678", "zhang.wei@example.com", "11010519491231002X"
PERSONAL = CaseInput(
    scenario="客服回复",
    prompt=f"我的手机号是{PHONE}，邮箱{EMAIL}，身份证号{ID}。请帮我写一段修改收货地址的客服回复。",
    bad_output="好的。",
    expected_output=f"您好！已收到您的请求，我们会通过{PHONE}联系您确认新的收货地址。",
    language="zh",
    license_consent=True,
)


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture
def accepted(contributor: User, maintainer: User) -> FeedbackCase:
    case = case_create(author=contributor, data=PERSONAL)
    return case_transition(case=case, to_status=CaseStatus.ACCEPTED, actor=maintainer)


def test_public_pages_and_api_mask_what_the_author_and_maintainers_see(
    accepted: FeedbackCase, contributor: User, maintainer: User, client_for
) -> None:
    public_list = Client().get(reverse("intake:requests")).content.decode()
    public_case = Client().get(reverse("intake:case_detail", args=[accepted.pk])).content.decode()
    api = json.dumps(Client().get("/api/v1/requests/").json(), ensure_ascii=False)
    for shown in (public_list, public_case, api):
        assert PHONE not in shown and EMAIL not in shown and ID not in shown
    assert "138****5678" in public_case and "修改收货地址" in public_case  # masked, the rest as typed
    for insider in (contributor, maintainer):
        page = client_for(insider).get(reverse("intake:case_detail", args=[accepted.pk])).content.decode()
        assert PHONE in page and EMAIL in page and ID in page


def test_a_dataset_version_holds_placeholders_and_counts_them(
    accepted: FeedbackCase, contributor: User, maintainer: User
) -> None:
    from datasets import load_from_disk

    accepted_cases(author=contributor, maintainer=maintainer, count=1)  # a batch needs two cases
    batch = batch_approve(batch=batch_create(by=maintainer, name="plan-pii"), by=maintainer)
    version = dataset_version_build(version_id=DatasetVersion.objects.get(batch=batch).pk)
    folder = dataset_version_abspath(version=version)
    rows = [row for split in load_from_disk(str(folder)).values() for row in split]
    text = json.dumps(rows, ensure_ascii=False)
    assert PHONE not in text and EMAIL not in text and ID not in text
    (row,) = [row for row in rows if row["id"] == f"case-{accepted.pk}"]
    assert "<PHONE>" in row["prompt"] and "<EMAIL>" in row["prompt"] and "<ID>" in row["prompt"]
    assert "修改收货地址" in row["prompt"] and "<PHONE>联系您" in row["response"]
    assert version.manifest["personal_data_replaced"] == {"EMAIL": 1, "ID": 1, "PHONE": 2}
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "| `<PHONE>` | 2 |" in card and "| `<ID>` | 1 |" in card
    # The stored case keeps what its author typed; only the dataset is scrubbed.
    assert PHONE in FeedbackCase.objects.get(pk=accepted.pk).prompt


def test_the_form_warns_before_submitting_personal_data_and_keeps_what_was_typed(
    contributor: User, maintainer: User, client_for
) -> None:
    browser = client_for(contributor)
    form = {"scenario": PERSONAL.scenario, "prompt": PERSONAL.prompt, "bad_output": PERSONAL.bad_output,
            "expected_output": PERSONAL.expected_output, "language": "zh", "license_consent": "on"}
    page = browser.post(reverse("intake:submit"), form).content.decode()
    assert not FeedbackCase.objects.exists()  # warned, nothing stored
    assert "seems to hold personal data" in page and "138****5678" in page and "身份证号" in page
    assert ID not in page.split("seems to hold personal data")[1].split("</ul>")[0]  # an ID is never echoed
    assert 'type="checkbox" name="personal_data_ok"' in page and PHONE in page  # the typed text comes back
    response = browser.post(reverse("intake:submit"), {**form, "personal_data_ok": "on"})
    case = FeedbackCase.objects.get()
    assert response.status_code == 302 and case.personal_data == ["EMAIL", "ID", "PHONE"]
    triage = client_for(maintainer).get(reverse("intake:triage")).content.decode()
    assert "personal data: EMAIL, ID, PHONE" in triage
    # Text without personal data goes straight through and is not flagged.
    clean = {**form, "prompt": "小明有3个苹果，又买了5个，一共有几个？", "expected_output": "3 + 5 = 8，一共8个。"}
    assert browser.post(reverse("intake:submit"), clean).status_code == 302
    assert FeedbackCase.objects.exclude(pk=case.pk).get().personal_data == []


def test_the_api_flags_personal_data(contributor: User, client_for) -> None:
    body = {"scenario": PERSONAL.scenario, "prompt": PERSONAL.prompt, "expected_output": PERSONAL.expected_output,
            "language": "zh", "license_consent": True}
    response = client_for(contributor).post("/api/v1/cases/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["personal_data"] == ["EMAIL", "ID", "PHONE"]

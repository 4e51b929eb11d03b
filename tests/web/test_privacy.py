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

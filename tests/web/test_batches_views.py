"""Batch pages: maintainers list, create, review, edit, approve and discard; nobody else gets in."""

from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from curation.models import BatchCase, BatchStatus, DatasetBatch, DatasetVersion
from curation.services import batch_approve, batch_create
from intake.models import CaseStatus

from .loop_factories import accepted_cases

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def test_maintainer_creates_a_batch_and_reviews_it(maintainer: User, contributor: User, client_for: Callable) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer)
    client = client_for(maintainer)
    page = client.get(reverse("curation:batch_create"))
    assert page.status_code == 200 and f"{len(cases)} cases qualify" in page.content.decode()
    response = client.post(reverse("curation:batch_create"), {"name": "plan-2024-01", "notes": "January."})
    batch = DatasetBatch.objects.get(name="plan-2024-01")
    assert response.status_code == 302 and response["Location"] == reverse("curation:batch_detail", args=[batch.pk])
    review = client.get(response["Location"]).content.decode()
    assert "This is the first batch." in review and "January." in review
    assert "<td>小学数学应用题</td><td>3</td>" in review and "<td>Chinese 中文</td><td>6</td>" in review
    assert review.count('class="status status-accepted"') == len(cases)
    assert "plan-2024-01" in client.get(reverse("curation:batch_list")).content.decode()


def test_create_form_errors_write_nothing(maintainer: User, client_for: Callable) -> None:
    client = client_for(maintainer)
    response = client.post(reverse("curation:batch_create"), {"name": "bad name!"})
    assert response.status_code == 200 and "Enter a valid value" in response.content.decode()
    response = client.post(reverse("curation:batch_create"), {"name": "empty"})
    assert "no accepted cases" in response.content.decode()
    assert not DatasetBatch.objects.exists()


def test_limit_and_cutoff_on_the_create_form(maintainer: User, contributor: User, client_for: Callable) -> None:
    accepted_cases(author=contributor, maintainer=maintainer)
    client_for(maintainer).post(reverse("curation:batch_create"), {"name": "top3", "limit": "3"})
    assert BatchCase.objects.filter(batch__name="top3").count() == 3
    old = {"name": "old", "created_before": "2001-01-01"}
    response = client_for(maintainer).post(reverse("curation:batch_create"), old)
    assert "no accepted cases" in response.content.decode()


def test_approve_from_the_page_enqueues_the_build(
    maintainer: User, contributor: User, client_for: Callable, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    from cotrain_site import celery_app

    sent: list[int] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: sent.append(args[0]))
    accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer, name="b")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(maintainer).post(reverse("curation:batch_approve", args=[batch.pk]), follow=True)
    page = response.content.decode()
    assert "Approved: the dataset is being built." in page and 'id="approve-form"' not in page
    batch.refresh_from_db()
    assert batch.status == BatchStatus.APPROVED and sent == [DatasetVersion.objects.get(batch=batch).pk]
    assert "pending" in page


def test_draft_edits_from_the_page(maintainer: User, contributor: User, client_for: Callable) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer, case_ids=[cases[0].pk, cases[1].pk])
    client = client_for(maintainer)
    client.post(reverse("curation:batch_case_remove", args=[batch.pk, cases[0].pk]))
    client.post(reverse("curation:batch_case_add", args=[batch.pk]), {"case_id": cases[2].pk, "weight": "2"})
    assert dict(BatchCase.objects.filter(batch=batch).values_list("case_id", "weight")) == {
        cases[1].pk: 1.0,
        cases[2].pk: 2.0,
    }
    page = client.post(reverse("curation:batch_case_add", args=[batch.pk]), {"case_id": 99999}, follow=True)
    assert "There is no case #99999." in page.content.decode()
    client.post(reverse("curation:batch_discard", args=[batch.pk]))
    batch.refresh_from_db()
    assert batch.status == BatchStatus.DISCARDED


def test_an_approved_batch_refuses_edits_from_the_page(
    maintainer: User, contributor: User, client_for: Callable, django_capture_on_commit_callbacks
) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=3)
    batch = batch_create(by=maintainer)
    with django_capture_on_commit_callbacks():
        batch_approve(batch=batch, by=maintainer)
    page = client_for(maintainer).post(
        reverse("curation:batch_case_remove", args=[batch.pk, cases[0].pk]), follow=True
    )
    assert "only a draft batch can change" in page.content.decode()
    assert BatchCase.objects.filter(batch=batch).count() == 3
    assert {c.status for c in type(cases[0]).objects.all()} == {CaseStatus.IN_BATCH}


def test_review_shows_the_changes_since_the_previous_batch(
    maintainer: User, contributor: User, client_for: Callable
) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=4)
    first = batch_create(by=maintainer, name="first", case_ids=[c.pk for c in cases[:3]])
    second = batch_create(by=maintainer, name="second", case_ids=[c.pk for c in cases[1:]])
    page = client_for(maintainer).get(reverse("curation:batch_detail", args=[second.pk])).content.decode()
    assert f">{first.name}</a> (draft):\n  1 added, 1 removed." in page
    assert f"Removed: <a href=\"/cases/{cases[0].pk}/\">#{cases[0].pk}</a> (accepted)" in page


@pytest.mark.parametrize(
    ("name", "args", "method"),
    [
        ("curation:batch_list", [], "get"),
        ("curation:batch_create", [], "get"),
        ("curation:batch_create", [], "post"),
        ("curation:batch_detail", ["BATCH"], "get"),
        ("curation:batch_approve", ["BATCH"], "post"),
        ("curation:batch_discard", ["BATCH"], "post"),
        ("curation:batch_case_add", ["BATCH"], "post"),
        ("curation:batch_case_remove", ["BATCH", "CASE"], "post"),
    ],
)
def test_only_maintainers_reach_batch_pages(
    maintainer: User, contributor: User, client_for: Callable, name: str, args: list, method: str
) -> None:
    cases = accepted_cases(author=contributor, maintainer=maintainer, count=2)
    batch = batch_create(by=maintainer, name="b")
    url = reverse(name, args=[{"BATCH": batch.pk, "CASE": cases[0].pk}[a] for a in args])
    assert getattr(client_for(contributor), method)(url).status_code == 403
    anonymous = getattr(Client(), method)(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("accounts:login"))
    batch.refresh_from_db()
    assert batch.status == BatchStatus.DRAFT and BatchCase.objects.filter(batch=batch).count() == 2
    assert DatasetBatch.objects.count() == 1


def test_admin_shows_batches_read_only(maintainer: User, contributor: User, client_for: Callable) -> None:
    accepted_cases(author=contributor, maintainer=maintainer, count=2)
    batch = batch_create(by=maintainer, name="b")
    admin = User.objects.create_superuser(username="root", password="x" * 20)
    client = client_for(admin)
    assert client.get(reverse("admin:curation_datasetbatch_changelist")).status_code == 200
    page = client.get(reverse("admin:curation_datasetbatch_change", args=[batch.pk]))
    assert page.status_code == 200 and 'name="items-0-case"' not in page.content.decode()
    assert client.get(reverse("admin:curation_datasetbatch_add")).status_code == 403

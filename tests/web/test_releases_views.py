"""Release pages, the releases API, the publish form and file downloads (size, ETag, ranges, counting)."""

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import User
from intake.models import FeedbackCase
from releases.models import Release, ReleaseFile, ReleaseStatus
from releases.selectors import release_abspath
from releases.services import release_publish, release_withdraw
from training.models import Evaluation, EvaluationStatus, TrainingRun

from .loop_factories import built_version, finished_run, write_export

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts(settings, tmp_path: Path) -> None:
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


@pytest.fixture
def run(contributor: User, maintainer: User) -> TrainingRun:
    version = built_version(author=contributor, maintainer=maintainer)
    run = finished_run(version=version, maintainer=maintainer)
    write_export(run)
    return run


@pytest.fixture
def release(run: TrainingRun, maintainer: User) -> Release:
    return release_publish(run=run, by=maintainer, tag="yuan2-tiny-demo-1")


def _file(release: Release, name: str) -> tuple[ReleaseFile, bytes, str]:
    row = ReleaseFile.objects.get(release=release, name=name)
    data = (release_abspath(release=release) / name).read_bytes()
    return row, data, reverse("releases:file", args=[release.tag, name])


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_public_list_and_detail(release: Release) -> None:
    client = Client()
    listing = client.get(reverse("releases:list")).content.decode()
    assert "yuan2-tiny-demo-1" in listing and "plan-test" in listing
    page = client.get(reverse("releases:detail", args=[release.tag])).content.decode()
    row = ReleaseFile.objects.get(release=release, name="merged/model.safetensors")
    assert row.sha256 in page and reverse("releases:file", args=[release.tag, row.name]) in page
    assert "trust_remote_code=True" in page and "sha256sum -c SHA256SUMS" in page
    for case in FeedbackCase.objects.all():
        assert reverse("intake:case_detail", args=[case.pk]) in page


def test_api_lists_releases_and_files_without_login(release: Release) -> None:
    data = Client().get("/api/v1/releases/").json()
    (item,) = data["results"]
    assert item["tag"] == release.tag and item["dataset"] == "plan-test" and item["base_checkpoint"] == "demo"
    files = {f["name"]: f for f in item["files"]}
    row = ReleaseFile.objects.get(release=release, name="SHA256SUMS")
    assert files["SHA256SUMS"]["sha256"] == row.sha256 and files["SHA256SUMS"]["size"] == row.size
    assert files["SHA256SUMS"]["download_url"] == f"http://testserver/releases/{release.tag}/files/SHA256SUMS"
    assert sorted(item["case_ids"]) == sorted(FeedbackCase.objects.values_list("pk", flat=True))
    assert Client().get(f"/api/v1/releases/{release.tag}/").json()["tag"] == release.tag
    assert Client().get("/api/v1/releases/nope/").status_code == 404


def test_full_download_has_size_etag_and_is_counted(release: Release) -> None:
    row, data, url = _file(release, "merged/model.safetensors")
    response = Client().get(url)
    assert response.status_code == 200 and response.streaming
    assert int(response["Content-Length"]) == row.size == len(data)
    assert response["ETag"] == f'"{row.sha256}"' and response["Accept-Ranges"] == "bytes"
    assert response["Content-Disposition"] == 'attachment; filename="model.safetensors"'
    body = _body(response)
    assert hashlib.sha256(body).hexdigest() == row.sha256
    row.refresh_from_db()
    assert row.download_count == 1


def test_range_requests_resume_a_download(release: Release) -> None:
    row, data, url = _file(release, "merged/model.safetensors")
    client = Client()
    first = client.get(url, HTTP_RANGE="bytes=0-999")
    assert first.status_code == 206 and first["Content-Range"] == f"bytes 0-999/{row.size}"
    head = _body(first)
    assert first["Content-Length"] == "1000" and head == data[:1000]
    rest = client.get(url, HTTP_RANGE="bytes=1000-", HTTP_IF_RANGE=f'"{row.sha256}"')
    assert rest.status_code == 206 and rest["Content-Range"] == f"bytes 1000-{row.size - 1}/{row.size}"
    assert head + _body(rest) == data
    tail = client.get(url, HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206 and _body(tail) == data[-10:]
    beyond_end = client.get(url, HTTP_RANGE=f"bytes=5-{row.size + 100}")
    assert beyond_end["Content-Range"] == f"bytes 5-{row.size - 1}/{row.size}"
    # One download: the first byte went out once (the -10 suffix and the resumed part do not count).
    row.refresh_from_db()
    assert row.download_count == 1


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=10-5", "bytes=abc", "bytes=-0", "bytes=-"])
def test_bad_ranges_get_416(release: Release, header: str) -> None:
    row, _, url = _file(release, "merged/model.safetensors")
    response = Client().get(url, HTTP_RANGE=header)
    assert response.status_code == 416 and response["Content-Range"] == f"bytes */{row.size}"
    row.refresh_from_db()
    assert row.download_count == 0


def test_ranges_are_ignored_when_the_client_holds_another_version(release: Release) -> None:
    _row, data, url = _file(release, "README.md")
    stale = Client().get(url, HTTP_RANGE="bytes=0-9", HTTP_IF_RANGE='"someotherversion"')
    assert stale.status_code == 200 and _body(stale) == data
    several = Client().get(url, HTTP_RANGE="bytes=0-1,5-6")
    assert several.status_code == 200 and _body(several) == data
    other_unit = Client().get(url, HTTP_RANGE="items=0-1")
    assert other_unit.status_code == 200


def test_if_none_match_gets_304_and_is_not_counted(release: Release) -> None:
    row, _, url = _file(release, "SHA256SUMS")
    response = Client().get(url, HTTP_IF_NONE_MATCH=f'"{row.sha256}"')
    assert response.status_code == 304 and response["ETag"] == f'"{row.sha256}"' and response.content == b""
    assert Client().get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    head = Client().head(url)
    assert head.status_code == 200 and head["Content-Length"] == str(row.size)
    row.refresh_from_db()
    assert row.download_count == 1  # the 200 GET; not the 304, not the HEAD


def test_downloads_of_unknown_or_withdrawn_files_are_404(release: Release, maintainer: User) -> None:
    client = Client()
    assert client.get(reverse("releases:file", args=[release.tag, "merged/../../../etc/passwd"])).status_code == 404
    assert client.get(reverse("releases:file", args=[release.tag, "nope.bin"])).status_code == 404
    assert client.post(reverse("releases:file", args=[release.tag, "README.md"])).status_code == 405
    release_withdraw(release=release, by=maintainer, reason="Found a problem.")
    assert client.get(reverse("releases:file", args=[release.tag, "README.md"])).status_code == 404
    assert client.get(reverse("releases:detail", args=[release.tag])).status_code == 404
    assert "yuan2-tiny-demo-1" not in client.get(reverse("releases:list")).content.decode()


def test_submitters_see_which_release_addressed_their_case(release: Release, client_for: Callable) -> None:
    case = FeedbackCase.objects.first()
    page = client_for(case.author).get(reverse("intake:case_detail", args=[case.pk])).content.decode()
    assert 'id="case-releases"' in page and reverse("releases:detail", args=[release.tag]) in page
    assert '<span class="status status-released" id="case-status">released</span>' in page


def test_my_cases_links_the_release_that_addressed_each_case_in_constant_queries(
    release: Release, client_for: Callable, make_case: Callable
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    author = FeedbackCase.objects.first().author
    client = client_for(author)
    link = f'<a href="{reverse("releases:detail", args=[release.tag])}">{release.tag}</a>'
    with CaptureQueriesContext(connection) as few:
        page = client.get(reverse("intake:my_cases")).content.decode()
    released = FeedbackCase.objects.filter(author=author).count()
    assert released >= 2 and page.count(link) == released
    for _ in range(5):
        make_case(author=author)
    with CaptureQueriesContext(connection) as more:
        page = client.get(reverse("intake:my_cases")).content.decode()
    # Five more rows, no more queries (one query finds the releases of the whole page); the new cases have none.
    assert page.count(link) == released and page.count('<tr>') == released + 5 + 1
    assert len(more.captured_queries) == len(few.captured_queries)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[int, int]]:
    from cotrain_site import celery_app

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(celery_app, "send_task", lambda name, args: calls.append(tuple(args)))
    return calls


def test_maintainer_publishes_from_the_publish_page(
    run: TrainingRun, maintainer: User, client_for: Callable, django_capture_on_commit_callbacks, sent: list
) -> None:
    from releases.tasks import publish_release

    client = client_for(maintainer)
    url = reverse("releases:publish", args=[run.pk])
    assert "passed" in client.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"tag": "from-the-page"})
    assert response.status_code == 302 and response["Location"] == reverse("releases:detail", args=["from-the-page"])
    release = Release.objects.get(run=run)
    assert release.status == ReleaseStatus.PUBLISHING and sent == [(release.pk, maintainer.pk)]
    # The maintainer follows it on the release page; the public does not see it yet.
    assert "publishing" in client.get(response["Location"]).content.decode()
    assert Client().get(response["Location"]).status_code == 404
    # The task (run here in-process; the other engineer's e2e runs a real worker) copies and publishes, once.
    assert publish_release.run(*sent[0])["status"] == ReleaseStatus.PUBLISHED
    assert publish_release.run(*sent[0])["status"] == ReleaseStatus.PUBLISHED
    assert Client().get(response["Location"]).status_code == 200
    assert ReleaseFile.objects.filter(release=release, name="README.md").count() == 1


def test_publish_page_shows_a_blocked_evaluation_and_takes_an_override(
    contributor: User, maintainer: User, client_for: Callable, sent: list
) -> None:
    version = built_version(author=contributor, maintainer=maintainer)
    run = finished_run(version=version, maintainer=maintainer, evaluation=EvaluationStatus.BLOCKED)
    write_export(run)
    client = client_for(maintainer)
    url = reverse("releases:publish", args=[run.pk])
    refused = client.post(url, {"tag": "blocked"})
    assert refused.status_code == 200 and "Publishing is blocked" in refused.content.decode()
    assert not Release.objects.exists()
    reason = "The general set moved within its noise; the requested cases improved clearly."
    assert client.post(url, {"tag": "blocked", "override_reason": reason}).status_code == 302
    release = Release.objects.get(run=run)
    assert release.status == ReleaseStatus.PUBLISHING and reason in release.notes
    assert Evaluation.objects.get(run=run).status == EvaluationStatus.OVERRIDDEN


def test_contributors_and_anonymous_cannot_publish(run: TrainingRun, contributor: User, client_for: Callable) -> None:
    url = reverse("releases:publish", args=[run.pk])
    assert client_for(contributor).post(url, {"tag": "x"}).status_code == 403
    assert client_for(contributor).get(url).status_code == 403
    anonymous = Client().post(url, {"tag": "x"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("accounts:login"))
    assert not Release.objects.exists()


def test_admin_shows_releases_read_only(release: Release, client_for: Callable) -> None:
    admin = User.objects.create_superuser(username="root", password="x" * 20)
    client = client_for(admin)
    assert client.get(reverse("admin:releases_release_changelist")).status_code == 200
    page = client.get(reverse("admin:releases_release_change", args=[release.pk])).content.decode()
    assert "merged/model.safetensors" in page and 'name="tag"' not in page


def test_the_publish_task_runs_on_the_default_queue() -> None:
    from releases.tasks import publish_release
    from worker.celery_app import app

    assert app.amqp.router.route({}, publish_release.name)["queue"].name == "default"


def test_visitors_see_the_base_models_name_never_its_server_path(run: TrainingRun, maintainer: User) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(base_checkpoint="/srv/cotrain/models/Yuan2-2B-Mars-hf")
    release = release_publish(run=TrainingRun.objects.get(pk=run.pk), by=maintainer, tag="yuan2-2b-fix-1")
    client = Client()
    pages = [client.get(reverse("releases:list")).content.decode(),
             client.get(reverse("releases:detail", args=[release.tag])).content.decode(),
             client.get("/api/v1/releases/").content.decode(),
             (release_abspath(release=release) / "README.md").read_text(encoding="utf-8")]
    for page in pages:
        assert "Yuan2-2B-Mars-hf" in page and "/srv/cotrain" not in page

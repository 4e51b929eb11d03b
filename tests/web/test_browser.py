"""Browser tests in headless Chromium (Debian's /usr/bin/chromium).

A contributor signs up and submits, a maintainer triages; a maintainer approves a
batch, opens a finished run, publishes it and downloads a file of the release.
"""

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection, connections

from accounts.models import User
from accounts.services import user_create, user_make_maintainer
from curation.models import BatchStatus, DatasetBatch, DatasetVersion, DatasetVersionStatus
from curation.services import batch_create
from intake.models import FeedbackCase
from releases.models import Release, ReleaseFile, ReleaseStatus

from .conftest import MATH_CASE, PASSWORD
from .loop_factories import accepted_cases, finished_run, write_export

CHROMIUM = os.environ.get("COTRAIN_CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} missing: apt-get install chromium"),
]


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # Playwright's sync API runs an event loop in this thread; Django's ORM refuses
    # to run inside one unless told that this test process is not serving async code.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser.new_page()
        browser.close()
        # While Playwright's loop is running in this thread, asgiref keeps Django's
        # connections in a context variable, not in the thread-local storage used
        # once it stops: a connection the test opened here would be orphaned, still
        # open when pytest-django drops the test database ("is being accessed by
        # other users"). Close it while that storage is still the one in use.
        connections.close_all()
    _assert_no_other_sessions()


def _assert_no_other_sessions(wait_s: float = 5.0) -> None:
    """Fail if a database session other than this thread's outlives the test."""
    if connection.vendor != "postgresql":
        return
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    deadline = time.monotonic() + wait_s
    while True:
        # The live server's request threads close theirs when Chromium's sockets close; give them a moment.
        with connection.cursor() as cursor:
            cursor.execute(query)
            (others,) = cursor.fetchone()
        if others == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert others == 0, f"{others} database session(s) left open after the browser test"


@pytest.mark.django_db(transaction=True)
def test_sign_up_submit_and_triage(live_server: object, browser_page: object) -> None:
    page, url = browser_page, live_server.url  # type: ignore[attr-defined]
    page.goto(f"{url}/accounts/signup/")
    page.fill("#id_username", "zhang_wei")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/submit/")

    page.fill("#id_scenario", MATH_CASE.scenario)
    page.fill("#id_prompt", MATH_CASE.prompt)
    page.fill("#id_bad_output", MATH_CASE.bad_output)
    page.fill("#id_expected_output", MATH_CASE.expected_output)
    page.check("#id_license_consent")
    page.click("form[method=post] button[type=submit]:has-text('Submit case')")
    page.wait_for_selector("#case-status")
    assert page.inner_text("#case-status") == "new"
    case = FeedbackCase.objects.get()
    assert case.author.username == "zhang_wei"

    user_make_maintainer(user=user_create(username="maint", password=PASSWORD))
    page.click("header button:has-text('Log out')")
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", "maint")
    page.fill("#id_password", PASSWORD)
    page.click("form[method=post] button[type=submit]")
    page.goto(f"{url}/triage/?status=new")
    page.check(f"input[name=case_ids][value='{case.pk}']")
    page.click("#bulk-form button[value=accept]")
    page.wait_for_selector(".messages .success")
    case.refresh_from_db()
    assert case.status == "accepted"
    assert case.events.last().actor == User.objects.get(username="maint")
    page.goto(f"{url}/requests/")
    assert MATH_CASE.scenario in page.inner_text("main")


@pytest.mark.django_db(transaction=True)
def test_maintainer_approves_publishes_and_downloads(
    live_server: object, browser_page: object, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    contributor: User, maintainer: User,
) -> None:
    page, url = browser_page, live_server.url  # type: ignore[attr-defined]
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    # No worker here (test_worker_e2e.py runs real ones): the two tasks these clicks queue
    # run in the request, as their task bodies. Training is not clicked through: a
    # finished run from the factories stands in for it, so the test stays fast.
    # Services enqueue by task name (cotrain_site.jobs): run the named task's body instead of sending it.
    from cotrain_site import jobs
    from curation.tasks import build_dataset_version
    from releases.tasks import publish_release

    bodies = {task.name: task.run for task in (build_dataset_version, publish_release)}
    monkeypatch.setattr(jobs, "enqueue", lambda name, *args: bodies[name](*args) is not None)
    accepted_cases(author=contributor, maintainer=maintainer)
    batch = batch_create(by=maintainer, name="plan-browser")

    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", maintainer.username)
    page.fill("#id_password", PASSWORD)
    page.click("form[method=post] button[type=submit]")
    page.goto(f"{url}/batches/{batch.pk}/")
    page.click("#approve-form button[type=submit]")
    page.wait_for_selector(".messages .success")
    assert DatasetBatch.objects.get(pk=batch.pk).status == BatchStatus.APPROVED
    version = DatasetVersion.objects.get(batch=batch)
    assert version.status == DatasetVersionStatus.READY, version.error

    run = finished_run(version=version, maintainer=maintainer)
    write_export(run)
    page.goto(f"{url}/runs/{run.pk}/")
    assert page.inner_text("#run-status") == "succeeded"
    page.click("#publish-link")
    page.fill("#id_tag", "browser-1")
    page.click("#publish-form button[type=submit]")
    page.wait_for_url(f"{url}/releases/browser-1/")
    release = Release.objects.get(tag="browser-1")
    assert release.status == ReleaseStatus.PUBLISHED and release.run_id == run.pk

    with page.expect_download() as download_info:
        page.click("a:text-is('merged/model.safetensors')")
    download = download_info.value
    expected = ReleaseFile.objects.get(release=release, name="merged/model.safetensors")
    assert download.suggested_filename == "model.safetensors"
    assert hashlib.sha256(Path(download.path()).read_bytes()).hexdigest() == expected.sha256


# What a page's links point to, and the markup that would run script, as the browser sees them.
_ACTIVE_CONTENT = """() => ({
    protocols: [...document.querySelectorAll("a[href]")].map(a => a.protocol),
    scripts: [...document.querySelectorAll("script")].filter(s => !s.src).length,
    handlers: [...document.querySelectorAll("*")].filter(e => [...e.attributes].some(a => /^on/i.test(a.name))).length,
})"""


@pytest.mark.django_db(transaction=True)
def test_no_script_runs_from_stored_links_cards_or_injected_markup(
    live_server: object, browser_page: object, contributor: User, maintainer: User, settings, tmp_path: Path,
) -> None:
    from curation.services import batch_approve, dataset_version_build
    from intake.models import CaseStatus
    from intake.services import CaseInput, case_create, case_transition
    from releases.services import release_publish

    from .test_hardening import HOSTILE_SCENARIOS, _rendered

    page, url = browser_page, live_server.url  # type: ignore[attr-defined]
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    ran: list[str] = []
    blocked: list[str] = []
    page.on("dialog", lambda dialog: (ran.append(dialog.message), dialog.dismiss()))
    page.on("console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text
            else None)
    cases = [
        case_transition(case=case_create(author=contributor, data=CaseInput(**{**MATH_CASE.__dict__, "scenario": s})),
                        to_status=CaseStatus.ACCEPTED, actor=maintainer)
        for s in HOSTILE_SCENARIOS
    ]
    # A link stored before URLs were checked at the door.
    FeedbackCase.objects.filter(pk=cases[0].pk).update(source_url="javascript:alert('stored link')")
    batch = batch_approve(batch=batch_create(by=maintainer, name="plan-hostile"), by=maintainer)
    version = dataset_version_build(version_id=DatasetVersion.objects.get(batch=batch).pk)
    run = finished_run(version=version, maintainer=maintainer)
    write_export(run)
    release = release_publish(run=run, by=maintainer, tag="hostile-browser")

    response = page.goto(f"{url}/cases/{cases[0].pk}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    pages = [f"/cases/{case.pk}/" for case in cases] + ["/requests/", f"/releases/{release.tag}/"]
    for path in pages:
        page.goto(url + path)
        found = page.evaluate(_ACTIVE_CONTENT)
        assert "javascript:" not in found["protocols"] and found["scripts"] == 0 and found["handlers"] == 0, path
    assert "&lt;script&gt;alert\\(1\\)" in page.inner_text("#model-card")  # the card's Markdown, shown as text

    # The cards as the Hub and GitHub render them (CommonMark, raw HTML allowed), in a page without our CSP.
    dataset_card = (tmp_path / "artifacts" / version.path / "README.md").read_text("utf-8")
    for card, links in ((release.model_card, True), (dataset_card, False)):
        page.set_content(_rendered(card))
        found = page.evaluate(_ACTIVE_CONTENT)
        assert "javascript:" not in found["protocols"] and found["scripts"] == 0 and found["handlers"] == 0
        assert ("http:" in found["protocols"]) == links  # the model card's case links are still links

    # The CSP is the second line: markup that got past the escaping still runs no script on our pages.
    page.goto(f"{url}/requests/")
    page.evaluate("""() => {
        const main = document.querySelector("main");
        main.insertAdjacentHTML("beforeend", '<a id="injected" href="javascript:alert(\\'injected link\\')">x</a>'
            + '<img src="x" onerror="alert(\\'injected handler\\')">');
        const script = document.createElement("script");
        script.textContent = "alert('injected script')";
        main.appendChild(script);
    }""")
    page.click("#injected", no_wait_after=True)
    page.wait_for_timeout(500)
    assert ran == [], ran
    assert len(blocked) >= 2, blocked

"""Issue 12, accounts part: client addresses behind proxies, sign-up and log-in limits, API tokens, the dev key file."""

import hashlib
import importlib
import re
import stat
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from accounts.models import ApiToken, LockoutKind, LoginLockout, User
from accounts.services import api_token_create
from cotrain_site.client_ip import client_ip
from intake.models import FeedbackCase
from intake.throttles import SubmitIpRateThrottle, SubmitUserRateThrottle

from .conftest import MATH_CASE, PASSWORD, run_manage
from .test_api import PAYLOAD

pytestmark = pytest.mark.django_db

# Only the per-address submission limit bites (2 per hour); the per-user one is far away.
IP_LIMIT_ONLY = override_settings(
    REST_FRAMEWORK={
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"submit_user": "100/hour", "submit_ip": "2/hour"},
    }
)
FORM = {
    "scenario": MATH_CASE.scenario,
    "prompt": MATH_CASE.prompt,
    "bad_output": MATH_CASE.bad_output,
    "expected_output": MATH_CASE.expected_output,
    "language": "zh",
    "tags_text": "math",
    "license_consent": "on",
}
LOCKED = "Too many failed log-ins"


def token_client(user: User, **extra: str) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    return client


# --- The client address -------------------------------------------------------


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, None, "192.0.2.1"),
        (0, "198.51.100.5", "192.0.2.1"),  # no proxy: the header is the client's own claim
        (1, None, "192.0.2.1"),
        (1, "198.51.100.5", "198.51.100.5"),
        (1, "6.6.6.6, 198.51.100.5", "198.51.100.5"),  # what the client wrote left of our proxy's entry
        (2, "6.6.6.6, 198.51.100.5, 10.0.0.2", "198.51.100.5"),
        (2, "198.51.100.5", "192.0.2.1"),  # fewer entries than proxies: it skipped one, trust nothing
        (1, "not-an-address", "192.0.2.1"),
        (1, " 2001:DB8::0001 ", "2001:db8::1"),  # one address, one spelling
    ],
)
def test_client_ip_trusts_forwarded_for_only_from_the_configured_proxies(
    proxies: int, forwarded: str | None, expected: str
) -> None:
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.1", **headers)
    with override_settings(NUM_PROXIES=proxies):
        assert client_ip(request) == expected
        # The submission throttles count the same identity.
        assert SubmitIpRateThrottle().get_ident(request) == SubmitUserRateThrottle().get_ident(request) == expected


def test_drf_num_proxies_is_zero_not_none_by_default() -> None:
    # None is DRF's "believe X-Forwarded-For"; the default must be the int 0.
    assert settings.NUM_PROXIES == 0
    assert api_settings.NUM_PROXIES == 0


@IP_LIMIT_ONLY
def test_forwarded_for_does_not_reset_the_api_submission_limit(contributor: User) -> None:
    client = token_client(contributor, REMOTE_ADDR="203.0.113.7")
    assert [client.post("/api/v1/cases/", PAYLOAD, format="json").status_code for _ in range(2)] == [201, 201]
    codes = [
        client.post("/api/v1/cases/", PAYLOAD, format="json", HTTP_X_FORWARDED_FOR=f"10.1.2.{i}").status_code
        for i in range(5)
    ]
    assert codes == [429] * 5
    assert FeedbackCase.objects.count() == 2


@IP_LIMIT_ONLY
def test_forwarded_for_does_not_reset_the_web_form_limit(client_for, contributor: User) -> None:
    client = client_for(contributor)
    codes = [client.post("/submit/", FORM, REMOTE_ADDR="203.0.113.8").status_code for _ in range(2)]
    assert codes == [302, 302]
    spoofed = [
        client.post("/submit/", FORM, REMOTE_ADDR="203.0.113.8", HTTP_X_FORWARDED_FOR=f"10.1.2.{i}").status_code
        for i in range(5)
    ]
    assert spoofed == [429] * 5
    assert FeedbackCase.objects.count() == 2


@IP_LIMIT_ONLY
@override_settings(NUM_PROXIES=1)
def test_behind_one_proxy_the_limit_counts_the_address_the_proxy_saw(contributor: User) -> None:
    client = token_client(contributor, REMOTE_ADDR="10.0.0.1")  # every request arrives from the proxy

    def post(forwarded: str) -> int:
        return client.post("/api/v1/cases/", PAYLOAD, format="json", HTTP_X_FORWARDED_FOR=forwarded).status_code

    # Whatever the client puts in front, the proxy's entry (the last) is what counts.
    assert [post("198.51.100.7"), post("1.1.1.1, 198.51.100.7"), post("2.2.2.2, 198.51.100.7")] == [201, 201, 429]
    assert post("198.51.100.8") == 201  # another client behind the same proxy has its own allowance


# --- Sign-up ------------------------------------------------------------------


def signup(username: str, address: str = "198.51.100.20", **extra: str) -> object:
    data = {"username": username, "email": "", "password1": PASSWORD, "password2": PASSWORD}
    return Client().post("/accounts/signup/", data, REMOTE_ADDR=address, **extra)


@override_settings(SIGNUP_RATE_IP="3/hour")
def test_signup_is_limited_per_address_and_every_attempt_counts(contributor: User) -> None:
    assert signup("wang_fang").status_code == 302
    # A taken name is said so (a person must pick another), but it uses up an attempt.
    taken = signup(contributor.username)
    assert taken.status_code == 200 and "already exists" in taken.content.decode()
    assert signup("zhao_lei", HTTP_X_FORWARDED_FOR="10.9.9.9").status_code == 302
    refused = [signup("chen_jing"), signup(contributor.username), signup("sun_li", HTTP_X_FORWARDED_FOR="10.9.9.8")]
    for response in refused:
        page = response.content.decode()
        assert response.status_code == 429
        assert "Too many sign-ups from your network: no account was created" in page
        assert "already exists" not in page  # past the limit, nothing is said about names
    assert set(User.objects.values_list("username", flat=True)) == {contributor.username, "wang_fang", "zhao_lei"}
    # Another address is not affected.
    assert signup("chen_jing", address="192.0.2.77").status_code == 302


# --- Log-in lockout -----------------------------------------------------------


def site_login(username: str, password: str, address: str = "198.51.100.30") -> object:
    return Client().post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def admin_login(username: str, password: str, address: str = "198.51.100.31") -> object:
    data = {"username": username, "password": password, "next": "/admin/"}
    return Client().post("/admin/login/?next=/admin/", data, REMOTE_ADDR=address)


def test_a_right_password_logs_in(contributor: User) -> None:
    assert site_login(contributor.username, PASSWORD).status_code == 302


@override_settings(LOGIN_FAILURES_PER_USER=10)
def test_ten_wrong_passwords_lock_the_account_even_for_the_right_one(contributor: User) -> None:
    # From ten addresses: the account's own count locks it, not any one address's.
    for i in range(10):
        wrong = site_login(contributor.username, f"guess-{i}", address=f"192.0.2.{i + 1}")
        assert wrong.status_code in (200, 429) and "_auth_user_id" not in wrong.client.session
    right = site_login(contributor.username, PASSWORD, address="203.0.113.99")
    assert right.status_code == 429
    assert LOCKED in right.content.decode() and "minute" in right.content.decode()
    assert "_auth_user_id" not in right.client.session
    lockout = LoginLockout.objects.get(kind=LockoutKind.ACCOUNT)
    assert (lockout.key, lockout.failures) == (contributor.username, 10)
    # Every other way in that checks a password is refused as well.
    assert authenticate(username=contributor.username, password=PASSWORD) is None


@override_settings(LOGIN_FAILURES_PER_USER=3)
def test_the_admin_login_shares_the_lockout(maintainer: User) -> None:
    maintainer.is_staff = True
    maintainer.save(update_fields=["is_staff"])
    assert admin_login(maintainer.username, PASSWORD).status_code == 302
    for i in range(3):
        assert admin_login(maintainer.username, f"guess-{i}").status_code == 200
    refused = admin_login(maintainer.username, PASSWORD)
    assert refused.status_code == 200 and LOCKED in refused.content.decode()
    assert "_auth_user_id" not in refused.client.session
    # ... and the site's login sees the same lock.
    assert site_login(maintainer.username, PASSWORD).status_code == 429


@override_settings(LOGIN_FAILURES_PER_IP=5, LOGIN_FAILURES_PER_USER=100)
def test_many_failures_from_one_address_lock_that_address_out(contributor: User) -> None:
    for i in range(5):
        site_login(f"someone_{i}", "guess", address="198.51.100.66")
    refused = site_login(contributor.username, PASSWORD, address="198.51.100.66")
    assert refused.status_code == 429 and LOCKED in refused.content.decode()
    # Spoofing X-Forwarded-For does not leave the locked address.
    spoofed = Client().post(
        "/accounts/login/",
        {"username": contributor.username, "password": PASSWORD},
        REMOTE_ADDR="198.51.100.66",
        HTTP_X_FORWARDED_FOR="10.0.0.5",
    )
    assert spoofed.status_code == 429
    assert site_login(contributor.username, PASSWORD, address="192.0.2.200").status_code == 302


@override_settings(LOGIN_FAILURES_PER_USER=3)
def test_the_lock_message_does_not_tell_real_names_from_made_up_ones(contributor: User) -> None:
    def locked_page(username: str) -> str:
        for i in range(3):
            site_login(username, f"guess-{i}", address=f"192.0.2.{i + 10}")
        response = site_login(username, "guess-again", address="192.0.2.50")
        assert response.status_code == 429
        (error,) = re.findall(r'<ul class="errorlist nonfield">(.*?)</ul>', response.content.decode(), flags=re.S)
        return error

    assert locked_page(contributor.username) == locked_page("nobody_by_this_name")


@override_settings(LOGIN_FAILURES_PER_USER=3)
def test_a_right_password_ends_a_run_of_failures(contributor: User) -> None:
    for _ in range(2):
        for i in range(2):
            site_login(contributor.username, f"guess-{i}")
        assert site_login(contributor.username, PASSWORD).status_code == 302
    assert not LoginLockout.objects.exists()


@override_settings(LOGIN_FAILURES_PER_USER=3, LOGIN_LOCKOUT_SECONDS=1)
def test_the_lock_ends_when_its_window_passes(contributor: User) -> None:
    for i in range(3):
        site_login(contributor.username, f"guess-{i}")
    assert site_login(contributor.username, PASSWORD).status_code == 429
    time.sleep(1.2)
    assert site_login(contributor.username, PASSWORD).status_code == 302


@override_settings(LOGIN_FAILURES_PER_USER=3)
def test_a_maintainer_unlocks_an_account_with_the_command(contributor: User, capsys: pytest.CaptureFixture) -> None:
    for i in range(3):
        site_login(contributor.username, f"guess-{i}")
    call_command("unlock_user", "--list")
    assert f"account\t{contributor.username}\t3 failures" in capsys.readouterr().out
    call_command("unlock_user", contributor.username)
    assert "lockout lifted" in capsys.readouterr().out
    # The failures were forgotten too: one more wrong password does not lock it again.
    site_login(contributor.username, "one-more-typo")
    assert site_login(contributor.username, PASSWORD).status_code == 302


@override_settings(LOGIN_FAILURES_PER_USER=3, LOGIN_FAILURES_PER_IP=3)
def test_admins_see_lockouts_and_lift_them(contributor: User) -> None:
    admin = User.objects.create_superuser(username="root", password=PASSWORD)
    for i in range(3):
        site_login(contributor.username, f"guess-{i}", address="198.51.100.90")
    lockouts = LoginLockout.objects.order_by("kind")
    assert [(lockout.kind, lockout.key) for lockout in lockouts] == [
        ("account", contributor.username),
        ("address", "198.51.100.90"),
    ]
    browser = Client()
    browser.force_login(admin)
    listing = browser.get("/admin/accounts/loginlockout/").content.decode()
    assert contributor.username in listing and "198.51.100.90" in listing
    response = browser.post(
        "/admin/accounts/loginlockout/",
        {"action": "lift", "_selected_action": [str(lockout.pk) for lockout in lockouts]},
    )
    assert response.status_code == 302
    assert not LoginLockout.objects.exists()
    assert site_login(contributor.username, PASSWORD, address="198.51.100.90").status_code == 302
    # The action on the user list does the same for an account.
    for i in range(3):
        site_login(contributor.username, f"guess-{i}", address=f"192.0.2.{i + 1}")
    browser.post("/admin/accounts/user/", {"action": "unlock", "_selected_action": [str(contributor.pk)]})
    assert site_login(contributor.username, PASSWORD).status_code == 302


# --- API tokens ---------------------------------------------------------------


def test_only_the_hash_of_a_key_is_stored_and_it_is_shown_once(client_for, contributor: User) -> None:
    browser = client_for(contributor)
    created = browser.post("/accounts/token/regenerate/")
    assert created.status_code == 200
    key = created.context["new_key"]
    assert key in created.content.decode() and "shown only once" in created.content.decode()
    token = ApiToken.objects.get(user=contributor)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        assert not any(key in str(value) for row in cursor.fetchall() for value in row)
    # The page never shows it again, and the key works.
    later = browser.get("/accounts/token/").content.decode()
    assert key not in later and token.prefix in later
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/cases/").status_code == 200


def test_the_token_page_is_never_cached(client_for, contributor: User) -> None:
    browser = client_for(contributor)
    for response in (browser.get("/accounts/token/"), browser.post("/accounts/token/regenerate/")):
        assert "no-store" in response["Cache-Control"]


def test_a_token_expires_after_the_configured_days(contributor: User) -> None:
    with override_settings(API_TOKEN_DAYS=30):
        issued = api_token_create(user=contributor)
    assert abs(issued.token.expires_at - (issued.token.created_at + timedelta(days=30))) < timedelta(seconds=1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    assert api.get("/api/v1/cases/").status_code == 200
    # Thirty days on (the row's clock moved back rather than the test's forward).
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = api.get("/api/v1/cases/")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


def test_a_token_is_revoked_from_the_token_page(client_for, contributor: User) -> None:
    browser = client_for(contributor)
    key = browser.post("/accounts/token/regenerate/").context["new_key"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/cases/").status_code == 200
    assert browser.post("/accounts/token/revoke/").status_code == 302
    assert api.get("/api/v1/cases/").status_code == 401
    assert "You have no API token" in browser.get("/accounts/token/").content.decode()


def test_an_admin_revokes_a_token(contributor: User) -> None:
    issued = api_token_create(user=contributor)
    admin = User.objects.create_superuser(username="root", password=PASSWORD)
    browser = Client()
    browser.force_login(admin)
    assert contributor.username in browser.get("/admin/accounts/apitoken/").content.decode()
    browser.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [str(issued.token.pk)]})
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issued.key}")
    assert api.get("/api/v1/cases/").status_code == 401


def test_old_plaintext_authtoken_keys_are_carried_over_as_hashes(contributor: User) -> None:
    # A database from before: DRF authtoken's table with a plaintext key (DDL is rolled back with the test).
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, user_id bigint)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [key, contributor.pk])
    migration = importlib.import_module("accounts.migrations.0003_hash_authtoken_keys")
    with connection.schema_editor() as editor:
        migration.hash_authtoken_keys(django_apps, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)  # the plaintext is gone
    token = ApiToken.objects.get(user=contributor)
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest() and token.expires_at > timezone.now()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/cases/").status_code == 200


# --- The embedded default's secret key ----------------------------------------


def test_the_dev_secret_key_file_is_private(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    result = run_manage("check", env={"COTRAIN_VAR_DIR": str(fresh)})
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((fresh / "dev-secret-key").stat().st_mode) == 0o600
    assert len((fresh / "dev-secret-key").read_text().strip()) >= 50
    assert [path.name for path in fresh.iterdir() if "secret" in path.name] == ["dev-secret-key"]  # no draft left
    # A key written by an older version (world-readable) is kept, and tightened.
    older = tmp_path / "older"
    older.mkdir()
    (older / "dev-secret-key").write_text("k" * 50)
    (older / "dev-secret-key").chmod(0o644)
    assert run_manage("check", env={"COTRAIN_VAR_DIR": str(older)}).returncode == 0
    assert stat.S_IMODE((older / "dev-secret-key").stat().st_mode) == 0o600
    assert (older / "dev-secret-key").read_text() == "k" * 50

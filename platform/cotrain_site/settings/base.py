"""Settings shared by every environment, read from environment variables in one place.

Every variable read here is listed, with a comment, in `.env.example`. Defaults are
the embedded setup: SQLite and a filesystem Celery broker under `var/`, so that a
fresh clone runs without PostgreSQL or Redis.
"""

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

REPO_ROOT = Path(__file__).resolve().parents[3]
PLATFORM_DIR = REPO_ROOT / "platform"


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


VAR_DIR = Path(env_str("COTRAIN_VAR_DIR", str(REPO_ROOT / "var"))).resolve()
ARTIFACT_ROOT = Path(env_str("COTRAIN_ARTIFACT_ROOT", str(VAR_DIR / "artifacts"))).resolve()

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("COTRAIN_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# License id written into released model cards (a fine-tune of the public Yuan 2.0 weights
# also carries the Yuan 2.0 model license; say so with "other" and the card's text).
RELEASE_LICENSE = env_str("COTRAIN_RELEASE_LICENSE", "apache-2.0")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "intake",
    "curation",
    "training",
    "releases",
    "ghsync",
    # Last: the main job, which uses every stage above (and which none of them imports).
    "loop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (no inline script) and Permissions-Policy on every response.
    "cotrain_site.security.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Other sites see our origin at most, never a page's path (case numbers, tokens in a query).
SECURE_REFERRER_POLICY = "same-origin"

ROOT_URLCONF = "cotrain_site.urls"
WSGI_APPLICATION = "cotrain_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [REPO_ROOT / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.roles",
            ],
        },
    },
]

# The embedded default is SQLite under var/; PostgreSQL in production and tests.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'cotrain.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web process and the Celery worker share the file.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Rate limits count in the cache; a per-process cache is right for the one
    # process of the embedded default, and REDIS_URL is required in production.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.User"
# The one place a password is checked (site, admin, any DRF password auth): it refuses
# locked-out accounts and addresses before checking, and counts failures.
AUTHENTICATION_BACKENDS = ["accounts.backends.LockoutModelBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "intake:my_cases"
LOGOUT_REDIRECT_URL = "intake:home"

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("COTRAIN_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": ARTIFACT_ROOT}},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Bodies larger than this are refused with a 400 before any view runs.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("COTRAIN_MAX_REQUEST_BYTES", 256 * 1024)

# Requests reach gunicorn directly in docker-compose.yml; set this to the number of
# proxies in front of it so that rate limits see the client's address. With 0,
# X-Forwarded-For is ignored (anyone can write it); cotrain_site.client_ip reads it.
NUM_PROXIES = env_int("COTRAIN_NUM_PROXIES", 0)
if NUM_PROXIES < 0:
    raise ImproperlyConfigured(f"COTRAIN_NUM_PROXIES={NUM_PROXIES} must be 0 or more")
# Sign-ups per client address (DRF rate syntax); every attempt counts, so the form's
# "username taken" answer cannot be used to list accounts quickly.
SIGNUP_RATE_IP = env_str("COTRAIN_SIGNUP_RATE_IP", "10/hour")
# Failed log-ins allowed per account name, and per client address, within the window;
# one more locks that account (or address) out for the window, even with the right
# password, until it passes or a maintainer unlocks it (admin, or manage.py unlock_user).
LOGIN_FAILURES_PER_USER = env_int("COTRAIN_LOGIN_FAILURES_USER", 10)
LOGIN_FAILURES_PER_IP = env_int("COTRAIN_LOGIN_FAILURES_IP", 50)
LOGIN_LOCKOUT_SECONDS = 60 * env_int("COTRAIN_LOGIN_LOCKOUT_MINUTES", 15)
# API tokens stop working this many days after they are created.
API_TOKEN_DAYS = env_int("COTRAIN_API_TOKEN_DAYS", 90)
if min(LOGIN_FAILURES_PER_USER, LOGIN_FAILURES_PER_IP, LOGIN_LOCKOUT_SECONDS, API_TOKEN_DAYS) < 1:
    raise ImproperlyConfigured(
        "COTRAIN_LOGIN_FAILURES_USER, COTRAIN_LOGIN_FAILURES_IP, COTRAIN_LOGIN_LOCKOUT_MINUTES "
        "and COTRAIN_API_TOKEN_DAYS must be 1 or more"
    )

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Looks tokens up by their hash; the key itself is never stored.
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's JSON parser with a nesting limit and no lone surrogates (a 400, not a 500 later).
    "DEFAULT_PARSER_CLASSES": ["intake.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "intake.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "submit_user": env_str("COTRAIN_SUBMIT_RATE_USER", "60/hour"),
        "submit_ip": env_str("COTRAIN_SUBMIT_RATE_IP", "120/hour"),
    },
    # An int, never None: DRF reads None as "believe X-Forwarded-For". Our throttles
    # ask cotrain_site.client_ip instead; this keeps DRF's own get_ident in agreement.
    "NUM_PROXIES": NUM_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "cotrain API",
    "DESCRIPTION": "Report Yuan 2.0 failure cases and requests; read your cases and the accepted requests.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs pages load Swagger UI / ReDoc from our static files, not a CDN:
    # the app must work on machines that reach no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The host part means nothing to the filesystem transport; naming one keeps kombu
# from warning "No hostname was supplied" whenever it prints the broker URL.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://localhost/"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport needs no server: one folder of message files
    # that the web process writes and the worker reads.
    _broker_dir = VAR_DIR / "celery-broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(VAR_DIR / "celery-control"),
    }
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or None
# The sweeper re-enqueues runs whose worker stopped sending heartbeats (a killed
# worker's message may otherwise wait for the broker's visibility timeout).
CELERY_BEAT_SCHEDULE = {
    "training-sweep-stale": {
        "task": "training.tasks.sweep_stale",
        "schedule": env_int("COTRAIN_RUN_SWEEP_SECONDS", 60),
    },
    # ... and releases whose publish copy went silent (queued again, or failed after a few attempts).
    "releases-sweep-stale": {
        "task": "releases.tasks.sweep_stale_publishing",
        "schedule": env_int("COTRAIN_RELEASE_SWEEP_SECONDS", 60),
    },
    # ... and dataset versions whose build message was lost or whose worker died mid-build.
    "curation-sweep-builds": {
        "task": "curation.tasks.sweep_dataset_builds",
        "schedule": env_int("COTRAIN_DATASET_SWEEP_SECONDS", 60),
    },
    "ghsync-sync-all": {"task": "ghsync.tasks.sync_all_sources", "schedule": 60 * env_int("GITHUB_SYNC_MINUTES", 15)},
    # Webhook deliveries and GitHub posts whose message was lost or whose worker died: sent again.
    "ghsync-sweep-stale": {"task": "ghsync.tasks.sweep_stale", "schedule": env_int("GITHUB_SWEEP_SECONDS", 60)},
    # The co-training plan collects the previous month's requests on the 6th: a draft batch to review.
    "curation-monthly-batch": {
        "task": "curation.tasks.create_monthly_batch",
        "schedule": crontab(minute=0, hour=3, day_of_month=6),
    },
}

# GitHub intake (ghsync app; docs/github.md). The API of github.com, or a GitHub
# Enterprise server's https://HOST/api/v3 (a source may name its own).
GITHUB_API_URL = env_str("GITHUB_API_URL", "https://api.github.com").rstrip("/")
# Where issues and comments live on the web (their `html_url`); links on any other host
# are not stored. Empty: derived from GITHUB_API_URL (api.github.com -> github.com,
# https://HOST/api/v3 -> HOST); set it when the API is reached through a proxy or mirror.
GITHUB_WEB_URL = env_str("GITHUB_WEB_URL").rstrip("/")
# Token for reading (and, where a source enables it, commenting); a source may name another variable.
GITHUB_TOKEN = env_str("GITHUB_TOKEN")
# The secret typed into the repository's webhook settings; without it the webhook refuses everything.
GITHUB_WEBHOOK_SECRET = env_str("GITHUB_WEBHOOK_SECRET")
# Seconds one GitHub request may take before it is retried with back-off.
GITHUB_TIMEOUT = env_int("GITHUB_TIMEOUT", 30)
# Longest single wait for a rate-limit reset (longer waits end the sync; the next one resumes).
GITHUB_MAX_WAIT_SECONDS = env_int("GITHUB_MAX_WAIT_SECONDS", 900)
# A webhook delivery claimed longer ago than this belongs to a worker that died: the sweeper queues it again.
GITHUB_DELIVERY_TIMEOUT_SECONDS = env_int("GITHUB_DELIVERY_TIMEOUT", 600)
# A comment post claimed longer ago than this belongs to a worker that died: it is sent again (marker checked first).
GITHUB_POST_TIMEOUT_SECONDS = env_int("GITHUB_POST_TIMEOUT", 300)

# Every job waits in its row (a version `pending`, a run `queued`, an evaluation `pending`,
# a release `publishing` not yet claimed); one that waited this long lost its message
# (broker down at enqueue, or restarted without persistence) and the sweepers enqueue it again.
JOB_REQUEUE_SECONDS = env_int("COTRAIN_JOB_REQUEUE_SECONDS", 300)
# A dataset version `building` whose heartbeat (its progress, every second) is older than this lost its
# worker and is built again from scratch.
DATASET_BUILD_TIMEOUT_SECONDS = env_int("COTRAIN_DATASET_BUILD_TIMEOUT", 900)
# How many requests a cluster of near-duplicates keeps in a dataset version (curation.pipeline).
DATASET_NEAR_DUP_KEEP = env_int("COTRAIN_DATASET_NEAR_DUP_KEEP", 1)
if DATASET_NEAR_DUP_KEEP < 1:
    raise ImproperlyConfigured(f"COTRAIN_DATASET_NEAR_DUP_KEEP={DATASET_NEAR_DUP_KEEP}: a cluster keeps at least 1.")

# Training runs and evaluations (training app).
# The bundled tiny base model that a run's base checkpoint "demo" means.
DEMO_BASE_CHECKPOINT = Path(env_str("COTRAIN_DEMO_BASE_CHECKPOINT", str(ARTIFACT_ROOT / "models" / "yuan2-tiny-demo")))
# A worker writes a run's progress (and its heartbeat) at most this often.
RUN_PROGRESS_SECONDS = env_float("COTRAIN_RUN_PROGRESS_SECONDS", 2.0)
# A running run whose heartbeat is older than this is taken over by the next attempt.
RUN_HEARTBEAT_TIMEOUT_SECONDS = env_int("COTRAIN_RUN_HEARTBEAT_TIMEOUT", 120)
# The general regression set scored before and after fine-tuning (JSONL in the trainer's fields).
GENERAL_EVAL_PATH = Path(env_str("COTRAIN_GENERAL_EVAL_PATH", str(REPO_ROOT / "trainer" / "assets" / "general.jsonl")))
EVAL_MAX_NEW_TOKENS = env_int("COTRAIN_EVAL_MAX_NEW_TOKENS", 48)
EVAL_SEQ_LEN = env_int("COTRAIN_EVAL_SEQ_LEN", 512)
# Publishing is blocked when the general set's chrF drops by more than this many points,
# or its loss rises by more than this fraction of the base model's loss.
EVAL_GENERAL_MAX_CHRF_DROP = env_float("COTRAIN_EVAL_GENERAL_MAX_CHRF_DROP", 2.0)
EVAL_GENERAL_MAX_LOSS_INCREASE = env_float("COTRAIN_EVAL_GENERAL_MAX_LOSS_INCREASE", 0.05)

# Releases (releases app). A `publishing` release whose copy has not written a
# heartbeat for this long is taken over by a new attempt ...
RELEASE_PUBLISH_TIMEOUT_SECONDS = env_int("COTRAIN_RELEASE_PUBLISH_TIMEOUT", 900)
# A release's files are hard links to the run's export (no gigabytes copied) where the filesystem allows;
# off: always copies (a release store that must not share inodes with run folders).
RELEASE_LINK_FILES = env_bool("COTRAIN_RELEASE_LINK_FILES", True)
# ... until this many attempts have been started; then it is marked failed (a maintainer may publish again).
RELEASE_PUBLISH_MAX_ATTEMPTS = env_int("COTRAIN_RELEASE_PUBLISH_MAX_ATTEMPTS", 3)
CELERY_TASK_ALWAYS_EAGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
}

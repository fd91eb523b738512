"""Settings for the control plane, read from the environment.

The embedded default needs no server: SQLite under var/ and Celery's file-based broker and result
backend under var/. Production sets DATABASE_URL and CELERY_BROKER_URL (PostgreSQL and Redis).
"""
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FLOWPLANE_VAR_DIR", BASE_DIR / "var"))


def env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEFAULT_SECRET_KEY = "insecure-development-key-change-me"
# Off unless asked for: a debug page shows settings and the database password to anyone.
DEBUG = env_flag("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", DEFAULT_SECRET_KEY)
if not DEBUG and SECRET_KEY.strip() in ("", DEFAULT_SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY is empty or the built-in development key while DEBUG is off; set SECRET_KEY "
        "in the environment to a long random value (bin/run keeps one in var/secret-key)"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: `runserver` then leaves static files to WhiteNoise as in production.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "controlplane.core",
    "controlplane.tenancy",
    "controlplane.workflows",
    "controlplane.fleet",
    "controlplane.executions",
    "controlplane.approvals",
    "controlplane.catalog",
    "controlplane.deployments",
    "controlplane.egress",
    "controlplane.triggers",
    "controlplane.web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself, compressed and with far-future caching headers.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # API limits and error shape: outside CommonMiddleware so its slash redirects come first.
    "controlplane.core.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A refused or lost database connection answers 503 with Retry-After, not an HTML 500.
    "controlplane.core.unavailable.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'controlplane.sqlite3'}"),
        # Workers run thousands of short tasks: reconnecting for each (Celery closes obsolete
        # connections after every task) would cost more than the task's own queries.
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, workers and beat share the file. Transactions take the write lock when they begin
    # (IMMEDIATE), so two that read then write wait their turn (busy timeout) instead of one
    # failing with "database is locked"; WAL lets readers go on while one writes.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))

# --- Operator sign-in (web pages) ---------------------------------------------------------------
# The operator pages have their own login (Django's auth views), open to every company member;
# staff keep the admin's login at /admin/. Paths, not URL names, so `?next=` links read plainly.
LOGIN_URL = os.environ.get("LOGIN_URL", "/login/")
LOGIN_REDIRECT_URL = os.environ.get("LOGIN_REDIRECT_URL", "/")
LOGOUT_REDIRECT_URL = os.environ.get("LOGOUT_REDIRECT_URL", "/login/")

REST_FRAMEWORK = {
    # Token first: DRF takes a 401's WWW-Authenticate challenge from the first authenticator.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.core.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["controlplane.core.parsers.BoundedJSONParser", "controlplane.core.parsers.YAMLParser"],
    "DEFAULT_SCHEMA_CLASS": "controlplane.core.schema.ApiAutoSchema",
    "DEFAULT_PAGINATION_CLASS": "controlplane.core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "controlplane.core.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# API limits: what one request may cost. Every JSON or YAML body and every graph document is read
# within them; crossing one is a 400 `limit_exceeded` naming it (413 for the body size).
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(2 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES  # Django refuses larger request.body reads
API_MAX_DOCUMENT_DEPTH = int(os.environ.get("API_MAX_DOCUMENT_DEPTH", "64"))
API_MAX_DOCUMENT_NODES = int(os.environ.get("API_MAX_DOCUMENT_NODES", "200000"))
# Values YAML aliases may add to one document in all (a "billion laughs" needs billions).
API_MAX_YAML_ALIAS_NODES = int(os.environ.get("API_MAX_YAML_ALIAS_NODES", "500"))
API_MAX_PAGE_SIZE = int(os.environ.get("API_MAX_PAGE_SIZE", "500"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Flowplane control plane API",
    "DESCRIPTION": "Author, publish, plan, apply, run and reconcile workflows on Celery worker groups.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `status`; name each enum after its model instead of a hash.
    "ENUM_NAME_OVERRIDES": {
        "WorkflowStatusEnum": "controlplane.workflows.models.WorkflowStatus",
        "ExecutionStatusEnum": "controlplane.executions.models.ExecutionStatus",
        "StepStatusEnum": "controlplane.executions.models.StepStatus",
        "WorkerStatusEnum": "controlplane.fleet.models.WorkerStatus",
        "DeploymentStatusEnum": "controlplane.deployments.models.DeploymentStatus",
        "JobDeploymentStatusEnum": "controlplane.deployments.models.JobDeploymentStatus",
    },
}

# Celery: the embedded default is a file-based broker and result backend under var/, written
# atomically (controlplane/core/embedded_broker.py; kombu's own `filesystem://` is not safe, issue #1551).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "atomicfs://")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", f"atomicfile://{VAR_DIR / 'celery-results'}")
if CELERY_BROKER_URL.startswith(("atomicfs://", "filesystem://")):
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # Chords join by chord_unlock polling on this transport: keep the poll short.
        "polling_interval": 0.05,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_RESULT_BACKEND.startswith(("atomicfile://", "file://")):
    _results_dir = Path(CELERY_RESULT_BACKEND.partition("://")[2])
else:
    _results_dir = None
# The file-based broker and result backend need their folders before the first message.
for _folder in [_results_dir, *[CELERY_BROKER_TRANSPORT_OPTIONS.get(k) for k in ("data_folder_in", "processed_folder", "control_folder")]]:
    if _folder:
        Path(_folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_RESULT_EXTENDED = False
# Backends without native chord support join by polling chord_unlock; poll often.
CELERY_RESULT_CHORD_RETRY_INTERVAL = float(os.environ.get("CELERY_RESULT_CHORD_RETRY_INTERVAL", "0.1"))
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_DEFAULT_QUEUE", "controlplane")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's consumer, except that a broker restart does not take the worker down (workers/consumer.py).
CELERY_WORKER_CONSUMER = "workers.consumer:Consumer"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "workers.beat:DatabaseScheduler"  # interval schedules on their grid
# Celery's Django fixup closes every database connection before and after each task unless this
# is set; workers/connections.py instead drops only stale or broken connections (CONN_MAX_AGE and
# health checks), which spares each step a new PostgreSQL backend.
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
CELERY_TIMEZONE = TIME_ZONE

# The default cache holds the webhook throttle's counts (controlplane/triggers/throttle.py). On the
# broker's Redis (or CACHE_URL) every web process shares them; the embedded default has no server,
# so each process counts alone. Keys are prefixed; never call cache.clear() on it: that is FLUSHDB
# of the broker's database.
CACHE_URL = os.environ.get("CACHE_URL", "") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
if CACHE_URL:
    CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "flowplane",
        # A Redis that does not answer fails a request within a second instead of hanging it.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Deliveries one webhook accepts per period: `<n>/<s|m|h|d>` (DRF's rate syntax).
HOOK_THROTTLE_RATE = os.environ.get("HOOK_THROTTLE_RATE", "120/min")
if not re.fullmatch(r"[1-9][0-9]*/(s|m|h|d)[a-z]*", HOOK_THROTTLE_RATE):
    raise ImproperlyConfigured(f"HOOK_THROTTLE_RATE={HOOK_THROTTLE_RATE!r} is not '<count>/<period>'; e.g. 120/min "
                               "(periods: s, m, h, d)")
# A chained run refused because its group has no live worker is tried again by the triggers sweep:
# the delay doubles from the initial one up to the maximum, for at most this many tries in all.
CHAIN_RETRY_MAX_TRIES = int(os.environ.get("CHAIN_RETRY_MAX_TRIES", "8"))
CHAIN_RETRY_INITIAL_S = float(os.environ.get("CHAIN_RETRY_INITIAL_S", "5"))
CHAIN_RETRY_MAX_DELAY_S = float(os.environ.get("CHAIN_RETRY_MAX_DELAY_S", "300"))

# Worker heartbeat: a worker unseen for longer than this is offline and its running steps are lost.
WORKER_HEARTBEAT_INTERVAL_S = float(os.environ.get("WORKER_HEARTBEAT_INTERVAL_S", "5"))
WORKER_OFFLINE_AFTER_S = float(os.environ.get("WORKER_OFFLINE_AFTER_S", "20"))
# Apply grows a worker's pool for replicas, but never past this many processes (each holds a
# database connection; see the README's sizing rule).
WORKER_MAX_POOL_SIZE = int(os.environ.get("WORKER_MAX_POOL_SIZE", "4"))
# Connections kept free of the fleet's when a plan checks the database's connection budget
# (migrations, the admin shell, monitoring).
DB_CONNECTION_HEADROOM = int(os.environ.get("DB_CONNECTION_HEADROOM", "10"))
# A step that finished while the database was away: its outcome is recorded again for this long
# before the task retries the step itself.
RECORD_RETRY_FOR_S = float(os.environ.get("RECORD_RETRY_FOR_S", "60"))
# Attempts lost to the engine's own database failing under them (the same task's retry takes the
# attempt over) do not count against a node's max_attempts; a shard that lost this many fails for
# good. Attempts lost to a dead process or worker count against max_attempts like failures.
STEP_MAX_LOST_ATTEMPTS = int(os.environ.get("STEP_MAX_LOST_ATTEMPTS", "3"))
# A chord header with more side-effect-free single-shard parts on one group than this runs them as
# this many tasks, each a slice of them in order (`pipelines.canvas.pack_headers`): a fan-out of
# cheap steps then costs one broker round trip per task instead of one per step, and still runs
# on up to this many processes at once.
try:
    ENGINE_HEADER_PARTS = int(os.environ.get("ENGINE_HEADER_PARTS", "16"))
except ValueError:
    ENGINE_HEADER_PARTS = 0
if ENGINE_HEADER_PARTS < 2:
    raise ImproperlyConfigured(f"ENGINE_HEADER_PARTS={os.environ.get('ENGINE_HEADER_PARTS')!r} is not an integer "
                               ">= 2 (how many tasks a wide chord header keeps); use e.g. 16")
# The watchdog: a run with nothing running and no event for this long has its canvas published
# again (the claims make that harmless); after this many re-drives in a row with no progress it fails.
EXECUTION_STALL_AFTER_S = float(os.environ.get("EXECUTION_STALL_AFTER_S", "60"))
EXECUTION_MAX_REDRIVES = int(os.environ.get("EXECUTION_MAX_REDRIVES", "5"))
# Cancel: the task ids of a run's canvases are kept this long after its last publish, so that a
# cancel can revoke them (a Redis set per run; a file per run under the directory on other brokers).
EXECUTION_TASK_IDS_TTL_S = int(os.environ.get("EXECUTION_TASK_IDS_TTL_S", str(7 * 24 * 3600)))
EXECUTION_TASK_IDS_DIR = os.environ.get("EXECUTION_TASK_IDS_DIR", str(VAR_DIR / "run-tasks"))
# `map` steps: a list longer than this fails the step (a config's max_items may only ask for less),
# and never more than this many of its items run at once (a config's max_parallel is capped here).
FLOWPLANE_MAP_MAX_ITEMS = int(os.environ.get("FLOWPLANE_MAP_MAX_ITEMS", "1000"))
FLOWPLANE_MAP_MAX_PARALLEL = int(os.environ.get("FLOWPLANE_MAP_MAX_PARALLEL", "100"))

# Modules whose import registers `python` step callables (the allow-list registry).
PIPELINES_CALLABLE_MODULES = env_list("PIPELINES_CALLABLE_MODULES", "pipelines.steps.builtin_callables")

# Secrets are encrypted at rest with a key derived from this (defaults to SECRET_KEY).
SECRETS_ENCRYPTION_KEY = os.environ.get("SECRETS_ENCRYPTION_KEY", SECRET_KEY)
# Where `landing` edges put data between groups: a local directory, or an object-store URL.
LANDING_STORE_URL = os.environ.get("LANDING_STORE_URL", f"file://{VAR_DIR / 'landing'}")

# -- Egress policy --------------------------------------------------------------------------------
# Steps may connect only to public addresses; loopback, private, link-local, metadata and other
# special ranges are refused unless an allow-list opens them (pipelines/egress.py). Refusing is not
# switchable: this deployment-wide list (comma-separated CIDRs, addresses or hosts, each with an
# optional :port) is added to every company's own allow-list. Empty by default.
EGRESS_ALLOW = env_list("EGRESS_ALLOW", "")
# Seconds a worker process keeps a company's parsed allow-list before reading it again.
EGRESS_RULES_CACHE_S = float(os.environ.get("EGRESS_RULES_CACHE_S", "5"))

# -- Email (the `notify` step's email channel) ----------------------------------------------------
# Django's email settings from the environment: EMAIL_BACKEND (SMTP when EMAIL_HOST is set, else files under var/mail), EMAIL_HOST,
# EMAIL_PORT, EMAIL_HOST_USER / EMAIL_HOST_PASSWORD, EMAIL_USE_TLS; EMAIL_FILE_PATH for the file
# backend. The mail server is the operator's, so it is not subject to the steps' egress policy.
# With no mail server named (the embedded default), mail is written to files under var/mail, one
# per message, rather than failing every email step against a localhost:25 nobody runs.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if os.environ.get("EMAIL_HOST")
    else "django.core.mail.backends.filebased.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_flag("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = float(os.environ.get("EMAIL_TIMEOUT", "10"))
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH") or str(VAR_DIR / "mail")
NOTIFY_FROM_EMAIL = os.environ.get("NOTIFY_FROM_EMAIL", "flowplane@localhost")

# --- jq sandbox (pipelines.sandbox) ---------------------------------------------------------
# jq programs and {{ }} templates run in a sandbox process per worker process. A step with
# timeout_s gives them what remains of it; others get this default budget (seconds). The memory
# cap bounds the sandbox process's address space (MiB, at least 64).
JQ_TIME_BUDGET_S = float(os.environ.get("JQ_TIME_BUDGET_S", "5"))
JQ_MEMORY_MIB = int(os.environ.get("JQ_MEMORY_MIB", "256"))

# --- Serving (web process, static files, HTTPS, database connections) -------------------------
# Every mode serves the web through gunicorn (bin/run included, see controlplane/gunicorn_conf.py);
# static files come from STATIC_ROOT through WhiteNoise, filled by `manage.py collectstatic`.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies (gzip, and brotli when installed) without a manifest: templates render
    # even where collectstatic has not run (tests), and WhiteNoise still serves what it collected.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# HTTPS. Defaults are those of production behind TLS; plain-HTTP local runs (bin/run, tests) turn
# them off for themselves. Behind a proxy that terminates TLS, set SECURE_PROXY_SSL_HEADER to the
# header it sets, e.g. `HTTP_X_FORWARDED_PROTO,https` (never without such a proxy: clients could
# claim HTTPS).
SECURE_SSL_REDIRECT = env_flag("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_flag("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_flag("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_flag("SECURE_HSTS_PRELOAD", False)
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    _header, _, _value = os.environ["SECURE_PROXY_SSL_HEADER"].partition(",")
    if not _header.strip() or not _value.strip():
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER={os.environ['SECURE_PROXY_SSL_HEADER']!r} is not '<header>,<value>'; "
            "e.g. HTTP_X_FORWARDED_PROTO,https"
        )
    SECURE_PROXY_SSL_HEADER = (_header.strip(), _value.strip())
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
SILENCED_SYSTEM_CHECKS = [
    # HSTS for every subdomain, and a request to be preloaded into browsers, commit the whole
    # domain to HTTPS for a year, sites this deployment does not know about included: an
    # operator's choice (SECURE_HSTS_INCLUDE_SUBDOMAINS, SECURE_HSTS_PRELOAD), not a default.
    "security.W005",
    "security.W021",
]
# How long the API asks a client to wait when the database refuses connections (the 503's
# Retry-After, in seconds).
DATABASE_UNAVAILABLE_RETRY_AFTER_S = int(os.environ.get("DATABASE_UNAVAILABLE_RETRY_AFTER_S", "5"))
# gunicorn's processes and threads are read by controlplane/gunicorn_conf.py from WEB_* variables.

# Structured logs (controlplane/core/logs.py): JSON lines, or a readable line on a terminal.
from controlplane.core.logs import logging_config  # noqa: E402

LOGGING = logging_config(fmt=os.environ.get("LOG_FORMAT", "auto"), level=os.environ.get("LOG_LEVEL", "INFO"))

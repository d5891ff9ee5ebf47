"""Every setting of the platform, read from the environment in this one place.

Defaults run everything on one machine (`make demo`); production values come from the
environment or a `.env` file (see platform/.env.example).
"""

from pathlib import Path

import environ
from kombu import Queue

from ops.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("M2D_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Signs sessions, password resets and export download links: with a key anyone can read, anyone
# can forge them, so only a debugging process may run without one.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise environ.ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random value, e.g. the output of "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'` (production: in "
            "platform/.env). make up, make demo and make test keep one in var/secret-key. "
            "Only for debugging on your own machine: DJANGO_DEBUG=true runs with a public key."
        )
    SECRET_KEY = "m2d-debug-only-key-never-use-in-production"
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
PORTAL_URL = env("M2D_PORTAL_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "submissions",
    "runner",
    "tracking",
    "exports",
    "disclosure",
    "modelstore",
    "serving",
    "ops",
    "hosts",
    # after "accounts", whose templates restyle allauth's pages
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
]

MIDDLEWARE = [
    "ops.middleware.OpsEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.StaffSecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ops.middleware.SubmissionLogContextMiddleware",
]

ROOT_URLCONF = "m2d.urls"
WSGI_APPLICATION = "m2d.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "m2d" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "m2d.context_processors.platform",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'm2d.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and workers write the same file: wait for locks instead of failing, take the write
    # lock up front so a read never has to be upgraded mid-transaction. In WAL mode, synchronous
    # NORMAL (SQLite's advice for WAL) survives any process being killed and never corrupts the
    # file; only a power cut can lose the last commits. FULL syncs the disk at every commit
    # (each audit row of a prediction), for M2D_SQLITE_SYNCHRONOUS=FULL.
    synchronous = env("M2D_SQLITE_SYNCHRONOUS", default="NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise environ.ImproperlyConfigured("M2D_SQLITE_SYNCHRONOUS is NORMAL or FULL.")
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous};",
        }
    )
# A web process keeps its database connection for a while rather than opening one per request
# (a tenth of a short page's time on SQLite, a network handshake on PostgreSQL); it is checked
# before reuse. `?conn_max_age=` in DATABASE_URL says otherwise.
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# The test run's database must be one the test's worker processes can open too.
if test_name := env("M2D_TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": test_name}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "submissions:list"
LOGOUT_REDIRECT_URL = "account_login"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# --- accounts (django-allauth) ----------------------------------------------------------------
ACCOUNT_ADAPTER = "accounts.adapter.ResearcherAccountAdapter"
ACCOUNT_FORMS = {"signup": "accounts.forms.ResearcherSignupForm", "login": "accounts.forms.PortalLoginForm"}
ACCOUNT_LOGIN_METHODS = {"email", "username"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[M2D] "
# "Signed in as …" and the like name people as the portal does: never by a made-up user name.
ACCOUNT_USER_DISPLAY = "accounts.people.person"
# Sign-up says plainly that an address is taken, instead of mailing its owner in silence.
ACCOUNT_PREVENT_ENUMERATION = env.bool("M2D_PREVENT_ACCOUNT_ENUMERATION", default=False)
# allauth's rate limits (sign-up, failed logins, e-mail confirmations, MFA) are on by default;
# they count in the cache, so several web processes need a shared one (CACHE_URL=rediscache://…).


def cache_config(url: str) -> dict:
    """The cache a URL names. A Redis cache stands in for itself with the process's memory while
    Redis does not answer (m2d.cache): sign-in keeps working, its limits counted per process."""
    config = environ.Env.cache_url_config(url)
    if config["BACKEND"] in ("django.core.cache.backends.redis.RedisCache", "django_redis.cache.RedisCache"):
        config["BACKEND"] = "m2d.cache.FallbackRedisCache"
        config.setdefault("OPTIONS", {}).update(socket_connect_timeout=2, socket_timeout=2)
    return config


CACHES = {"default": cache_config(env.str("CACHE_URL", default="locmemcache://"))}
# Proxies in front of the portal (nginx: 1). Each adds the address it was called from to
# X-Forwarded-For: allauth's per-address limits count the caller's address, not the proxy's.
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("M2D_TRUSTED_PROXIES", default=0)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env("M2D_MFA_ISSUER", default="M2D")
M2D_STAFF_MFA_REQUIRED = env.bool("M2D_STAFF_MFA_REQUIRED", default=True)
M2D_SIGNUP_OPEN = env.bool("M2D_SIGNUP_OPEN", default=True)
# Who is told that a researcher waits for approval (default: every active staff user with an e-mail).
M2D_APPROVER_EMAILS = env.list("M2D_APPROVER_EMAILS", default=[])

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TZ", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("M2D_STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_ROOT = Path(env("M2D_MEDIA_ROOT", default=str(VAR_DIR / "media")))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- REST API (/api/v1/) ---------------------------------------------------------------------
# Quotas per user (DRF rates: N/s, N/min, N/hour, N/day), counted in the cache (CACHE_URL).
M2D_PREDICT_RATE = env("M2D_PREDICT_RATE", default="60/min")
M2D_BATCH_RATE = env("M2D_BATCH_RATE", default="20/day")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.SubmissionPagination",
    "PAGE_SIZE": env.int("M2D_API_PAGE_SIZE", default=50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"predict": M2D_PREDICT_RATE, "batch": M2D_BATCH_RATE},
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "M2D API",
    "DESCRIPTION": "Submit training code, follow it, read its logs and metrics, collect released exports. "
    "Authenticate with the API token from your account page: `Authorization: Token <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several answers have a field named status; each set of choices gets a name of its own.
    "ENUM_NAME_OVERRIDES": {"SubmissionStatusEnum": "submissions.models.Submission.Status"},
}

# --- mail -------------------------------------------------------------------------------------
EMAIL_URL = env("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="M2D <m2d@localhost>")
EMAIL_TIMEOUT = 20
# Every mail is stored before it is sent (ops.outbox). One the mail server did not take is tried
# again, with growing pauses up to an hour, for this long; one whose sender died is taken over
# after the lease.
M2D_MAIL_RETRY_HOURS = env.float("M2D_MAIL_RETRY_HOURS", default=48)
M2D_MAIL_LEASE_SECONDS = env.int("M2D_MAIL_LEASE_SECONDS", default=120)

# --- Celery -----------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Queue names are settings so that separate worker pools (another site, a test) never mix.
M2D_QUEUE_BUILD = env("M2D_QUEUE_BUILD", default="build")
M2D_QUEUE_RUN = env("M2D_QUEUE_RUN", default="run")
M2D_QUEUE_OPS = env("M2D_QUEUE_OPS", default="default")
M2D_QUEUE_SERVE_BATCH = env("M2D_QUEUE_SERVE_BATCH", default="serve-batch")
CELERY_TASK_QUEUES = (
    Queue(M2D_QUEUE_BUILD),
    Queue(M2D_QUEUE_RUN),
    Queue(M2D_QUEUE_OPS),
    Queue(M2D_QUEUE_SERVE_BATCH),
)
CELERY_TASK_DEFAULT_QUEUE = M2D_QUEUE_OPS
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("M2D_BROKER_VISIBILITY_TIMEOUT", default=3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
M2D_RECONCILE_SECONDS = env.float("M2D_RECONCILE_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {
        "task": "runner.tasks.reconcile",
        "schedule": M2D_RECONCILE_SECONDS,
        "options": {"queue": M2D_QUEUE_OPS},
    },
}

# --- intake -----------------------------------------------------------------------------------
M2D_MAX_UPLOAD_BYTES = env.int("M2D_MAX_UPLOAD_BYTES", default=100 * 1024**2)
M2D_MAX_UNCOMPRESSED_BYTES = env.int("M2D_MAX_UNCOMPRESSED_BYTES", default=1024**3)
M2D_MAX_FILES = env.int("M2D_MAX_FILES", default=10_000)
# URL, version-control and path lines in requirements.txt; pip options that pick an index are
# refused whatever this says.
M2D_ALLOW_REQUIREMENT_URLS = env.bool("M2D_ALLOW_REQUIREMENT_URLS", default=False)

# --- images and runs --------------------------------------------------------------------------
M2D_BASE_IMAGE = env("M2D_BASE_IMAGE", default="python:3.11-slim-bookworm")
M2D_RUNTIME_IMAGE = env("M2D_RUNTIME_IMAGE", default="m2d-runtime:latest")
M2D_FORWARDER_IMAGE = env("M2D_FORWARDER_IMAGE", default="m2d-forwarder:latest")
M2D_GPU_IDS = env.list("M2D_GPU_IDS", default=[])
# Run slots: one per GPU of M2D_GPU_IDS on a GPU host, else this many CPU slots. A slot is named
# by host and GPU; each host's run worker runs one process per slot.
M2D_CPU_SLOTS = env.int("M2D_CPU_SLOTS", default=1)
M2D_HOST_NAME = env("M2D_HOST_NAME", default="")
M2D_MAX_RUNNING_PER_RESEARCHER = env.int("M2D_MAX_RUNNING_PER_RESEARCHER", default=2)
M2D_MAX_QUEUED_PER_RESEARCHER = env.int("M2D_MAX_QUEUED_PER_RESEARCHER", default=20)
# A run worker says it is alive this often; a run unheard of for three beats is adopted.
M2D_HEARTBEAT_SECONDS = env.int("M2D_HEARTBEAT_SECONDS", default=10)
# A run unheard of this long lost its worker for good (its host is down, or its worker did not come
# back): it is queued again, once, for any host (a worker back later removes what it left there).
M2D_RUN_LOST_SECONDS = env.int("M2D_RUN_LOST_SECONDS", default=600)
# A host takes no new work while any folder it writes to (export volumes, exports, gateway
# sockets, the engine's data root where the worker sees it, and M2D_HOST_DISK_PATHS) has less free.
M2D_HOST_MIN_FREE_BYTES = env.int("M2D_HOST_MIN_FREE_BYTES", default=2 * 1024**3)
M2D_HOST_DISK_PATHS = [Path(p) for p in env.list("M2D_HOST_DISK_PATHS", default=[])]
# How often a run lost to a platform fault is requeued before it fails at stage infrastructure.
M2D_INFRASTRUCTURE_RETRIES = env.int("M2D_INFRASTRUCTURE_RETRIES", default=1)
# How long a run slot waits for a restarting Docker engine before it calls the run lost.
M2D_ENGINE_RESTART_WAIT_SECONDS = env.int("M2D_ENGINE_RESTART_WAIT_SECONDS", default=120)
# Which Dockerfile builds submissions: GPU hosts use docker_scripts/execute_code.
M2D_USE_GPU = env.bool("M2D_USE_GPU", default=bool(M2D_GPU_IDS))
M2D_DOCKER_SCRIPTS_DIR = BASE_DIR / "docker_scripts"
M2D_INSTANCE = env("M2D_INSTANCE", default="m2d")
M2D_DATASET_DIR = Path(env("M2D_DATASET_DIR", default=str(BASE_DIR / "dataset")))
M2D_EXPORT_ROOT = Path(env("M2D_EXPORT_ROOT", default=str(VAR_DIR / "exports")))
M2D_GATEWAY_DIR = Path(env("M2D_GATEWAY_DIR", default=str(VAR_DIR / "gateway")))
M2D_RUN_UID = env.int("M2D_RUN_UID", default=1000)
M2D_FORWARDER_UID = env.int("M2D_FORWARDER_UID", default=65534)
M2D_RUN_MEMORY = env("M2D_RUN_MEMORY", default="4g")
M2D_RUN_CPUS = env.float("M2D_RUN_CPUS", default=2.0)
M2D_RUN_PIDS = env.int("M2D_RUN_PIDS", default=512)
M2D_RUN_SHM = env("M2D_RUN_SHM", default="1g")
M2D_RUN_TMP = env("M2D_RUN_TMP", default="1g")
M2D_RUN_TIMEOUT = env.int("M2D_RUN_TIMEOUT", default=24 * 3600)
# A run that prints nothing for this long is stopped (a hung data loader, a deadlock).
M2D_RUN_SILENCE_TIMEOUT = env.int("M2D_RUN_SILENCE_TIMEOUT", default=2 * 3600)

# Serving: each worker of a deployed model version is a sealed container of the submission's image,
# reached over a unix socket in a folder of its own under M2D_SERVE_DIR.
M2D_SERVE_DIR = Path(env("M2D_SERVE_DIR", default=str(VAR_DIR / "serve")))
M2D_SERVE_UID = env.int("M2D_SERVE_UID", default=M2D_RUN_UID)
# The platform's server that every worker runs, as the Docker engine sees it: in production the
# portal's own folder exists only inside its container, so the ops worker copies it to the host.
M2D_SERVE_SERVER_DIR = Path(env("M2D_SERVE_SERVER_DIR", default=str(BASE_DIR / "docker_scripts" / "serve")))
M2D_SERVE_MEMORY = env("M2D_SERVE_MEMORY", default="2g")
M2D_SERVE_CPUS = env.float("M2D_SERVE_CPUS", default=1.0)
M2D_SERVE_PIDS = env.int("M2D_SERVE_PIDS", default=128)
M2D_SERVE_SHM = env("M2D_SERVE_SHM", default="256m")
M2D_SERVE_TMP = env("M2D_SERVE_TMP", default="256m")
M2D_SERVE_STARTUP_TIMEOUT = env.float("M2D_SERVE_STARTUP_TIMEOUT", default=120.0)
M2D_SERVE_RESPONSE_TIMEOUT = env.float("M2D_SERVE_RESPONSE_TIMEOUT", default=120.0)
M2D_SERVE_MAX_BODY = env.int("M2D_SERVE_MAX_BODY", default=64 * 1024**2)
M2D_SERVE_MAX_PIXELS = env.int("M2D_SERVE_MAX_PIXELS", default=50_000_000)
M2D_SERVE_MAX_ANSWER_BYTES = env.int("M2D_SERVE_MAX_ANSWER_BYTES", default=1024**2)
M2D_SERVE_MAX_WORKERS = env.int("M2D_SERVE_MAX_WORKERS", default=4)
# A worker that fails to start is tried again after a pause that doubles with each failure in a
# row, from RESTART_BACKOFF up to RESTART_BACKOFF_MAX seconds; after DEGRADED_AFTER of them the
# deployment is degraded and its owner and the admins get one mail.
M2D_SERVE_RESTART_BACKOFF = env.float("M2D_SERVE_RESTART_BACKOFF", default=10.0)
M2D_SERVE_RESTART_BACKOFF_MAX = env.float("M2D_SERVE_RESTART_BACKOFF_MAX", default=600.0)
M2D_SERVE_DEGRADED_AFTER = env.int("M2D_SERVE_DEGRADED_AFTER", default=3)
# Predictions one worker runs at once; a request waits up to QUEUE_SECONDS for one to end, and is
# answered 503 with Retry-After when every worker of the version is still busy.
M2D_SERVE_IN_FLIGHT = env.int("M2D_SERVE_IN_FLIGHT", default=1)
M2D_SERVE_QUEUE_SECONDS = env.float("M2D_SERVE_QUEUE_SECONDS", default=2.0)
# Between min_worker and max_worker: one more worker when requests were refused as busy within
# the last BUSY_WINDOW seconds; one fewer when the version answered nothing for IDLE_SECONDS.
M2D_SERVE_BUSY_WINDOW = env.float("M2D_SERVE_BUSY_WINDOW", default=60.0)
M2D_SERVE_IDLE_SECONDS = env.float("M2D_SERVE_IDLE_SECONDS", default=600.0)
# Serving hosts other than the gateway's: each runs the relay (m2d.relay_wsgi) at this URL, as the
# gateway reaches it, and signs nothing without the secret the gateway shares (32 characters or more).
# Left empty, this host's workers are reached through the serving folder the gateway mounts.
M2D_SERVE_RELAY_URL = env("M2D_SERVE_RELAY_URL", default="")
M2D_SERVE_RELAY_SECRET = env("M2D_SERVE_RELAY_SECRET", default="")
M2D_SERVE_RELAY_MAX_SKEW = env.int("M2D_SERVE_RELAY_MAX_SKEW", default=30)
# The CA that signed the relays' certificates (https:// relay URLs); the system's CAs when empty.
M2D_SERVE_RELAY_CA = env("M2D_SERVE_RELAY_CA", default="")
# Batch jobs: a zip of cases, each sent through the same gateway, one at a time, by the
# serve-batch worker. The zip is kept only until its job ends.
M2D_BATCH_MAX_CASES = env.int("M2D_BATCH_MAX_CASES", default=1000)
M2D_BATCH_MAX_ZIP_BYTES = env.int("M2D_BATCH_MAX_ZIP_BYTES", default=100 * 1024**2)
M2D_BATCH_MAX_UNPACKED_BYTES = env.int("M2D_BATCH_MAX_UNPACKED_BYTES", default=1024**3)
M2D_BATCH_MAX_OUTPUT_BYTES = env.int("M2D_BATCH_MAX_OUTPUT_BYTES", default=16 * 1024)
# How long a batch waits for a ready worker before it stops (its cases so far are kept).
M2D_BATCH_WORKER_WAIT_SECONDS = env.float("M2D_BATCH_WORKER_WAIT_SECONDS", default=120.0)
# A job still queued this long after it was made, with nothing in the batch queue, lost its
# message (the broker was down): the maintenance worker sends it again.
M2D_BATCH_RESEND_SECONDS = env.float("M2D_BATCH_RESEND_SECONDS", default=120.0)
# Hard cap on what a run may write to /mnt/export (a loop-mounted file system of this size).
M2D_EXPORT_MAX_BYTES = env.int("M2D_EXPORT_MAX_BYTES", default=5 * 1024**3)
M2D_EXPORT_VOLUME_DIR = Path(env("M2D_EXPORT_VOLUME_DIR", default=str(VAR_DIR / "export-volumes")))
# A build runs the researcher's code too (a package's setup.py): sealed like a run. Its one way out
# is the platform's package index, reached through a relay, never the network; it runs as a
# non-root builder within these limits: memory, CPUs, processes and threads, time, and the bytes
# it may add to the image (any one file, and all of them together).
M2D_PACKAGE_INDEX_URL = env("M2D_PACKAGE_INDEX_URL", default="http://127.0.0.1:3141/root/pypi/+simple/")
M2D_BUILD_MEMORY = env("M2D_BUILD_MEMORY", default="4g")
M2D_BUILD_CPUS = env.float("M2D_BUILD_CPUS", default=2.0)
M2D_BUILD_PIDS = env.int("M2D_BUILD_PIDS", default=512)
M2D_BUILD_MAX_BYTES = env.int("M2D_BUILD_MAX_BYTES", default=8 * 1024**3)
M2D_BUILD_TIMEOUT = env.int("M2D_BUILD_TIMEOUT", default=3600)
M2D_LOG_MAX_BYTES = env.int("M2D_LOG_MAX_BYTES", default=10 * 1024**2)
M2D_LOG_TAIL_LINES = env.int("M2D_LOG_TAIL_LINES", default=40)
# The tracking gateway's allowances for one submission, over all its attempts (a requeued or
# adopted run goes on with what is left): bytes the run sends out, bytes of answers it reads back
# in (an answer is a way in for commands), and the largest single answer.
M2D_TRACKING_MAX_BYTES = env.int("M2D_TRACKING_MAX_BYTES", default=1_000_000)
M2D_TRACKING_MAX_BYTES_IN = env.int("M2D_TRACKING_MAX_BYTES_IN", default=4_000_000)
M2D_TRACKING_MAX_ANSWER_BYTES = env.int("M2D_TRACKING_MAX_ANSWER_BYTES", default=1024 * 1024)
# What one researcher may get out unreviewed (tracking bytes sent plus run log tails shown) over
# any 24 hours, across all their submissions: a per-run cap times unlimited runs is no cap.
M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY = env.int("M2D_EXIT_BYTES_PER_RESEARCHER_PER_DAY", default=5_000_000)
# What /mnt/export may hold for it to be collected; past any of these the run fails at the export
# stage and nothing of it is kept (names are data too, so each is kept short and plain).
M2D_EXPORT_MAX_FILES = env.int("M2D_EXPORT_MAX_FILES", default=1000)
M2D_EXPORT_MAX_PATH_CHARS = env.int("M2D_EXPORT_MAX_PATH_CHARS", default=200)
M2D_EXPORT_NAME_CHARACTERS = env("M2D_EXPORT_NAME_CHARACTERS", default="A-Za-z0-9._+=@,-")
M2D_STOP_GRACE_SECONDS = env.int("M2D_STOP_GRACE_SECONDS", default=10)
M2D_KEEP_IMAGES = env.bool("M2D_KEEP_IMAGES", default=False)
# Untagged build layers (the requirements layers later submissions reuse) are removed once unused and this old.
M2D_BUILD_CACHE_SECONDS = env.int("M2D_BUILD_CACHE_SECONDS", default=7 * 24 * 3600)

# --- MLflow -----------------------------------------------------------------------------------
MLFLOW_URL = env("MLFLOW_URL", default="http://127.0.0.1:3001").rstrip("/")
MLFLOW_PUBLIC_URL = env("MLFLOW_PUBLIC_URL", default=MLFLOW_URL).rstrip("/")
MLFLOW_ADMIN_USERNAME = env("MLFLOW_ADMIN_USERNAME", default="m2d-admin")
MLFLOW_ADMIN_PASSWORD = env("MLFLOW_ADMIN_PASSWORD", default="m2d-local-mlflow-admin-pw")
# Key for MLflow passwords at rest (Fernet); derived from SECRET_KEY when not given.
M2D_ENCRYPTION_KEY = env("M2D_ENCRYPTION_KEY", default="")

# --- disclosure risk ----------------------------------------------------------------------------
# A run's exported models (folders with the predict contract or an MLflow pyfunc) are attacked with
# SACRO-ML next to the data, and its CSV tables checked with ACRO, before the reviewer decides.
M2D_DISCLOSURE_ENABLED = env.bool("M2D_DISCLOSURE_ENABLED", default=True)
M2D_DISCLOSURE_IMAGE = env("M2D_DISCLOSURE_IMAGE", default="m2d-disclosure:latest")
M2D_DISCLOSURE_WORK_DIR = Path(env("M2D_DISCLOSURE_WORK_DIR", default=str(VAR_DIR / "disclosure")))
# A membership attack AUC at or above this, differing from guessing with p at most MAX_P_VALUE,
# means the model reveals who was in the training set; its release needs a second admin and a reason.
M2D_DISCLOSURE_MAX_AUC = env.float("M2D_DISCLOSURE_MAX_AUC", default=0.65)
M2D_DISCLOSURE_MAX_P_VALUE = env.float("M2D_DISCLOSURE_MAX_P_VALUE", default=0.05)
M2D_DISCLOSURE_MIN_CASES = env.int("M2D_DISCLOSURE_MIN_CASES", default=10)  # of each split
M2D_DISCLOSURE_MAX_CASES = env.int("M2D_DISCLOSURE_MAX_CASES", default=500)  # scored per split
M2D_DISCLOSURE_MIN_CELL_COUNT = env.int("M2D_DISCLOSURE_MIN_CELL_COUNT", default=10)  # ACRO's threshold rule
M2D_DISCLOSURE_TIMEOUT = env.int("M2D_DISCLOSURE_TIMEOUT", default=900)  # scoring, seconds
M2D_DISCLOSURE_TABLE_TIMEOUT = env.int("M2D_DISCLOSURE_TABLE_TIMEOUT", default=300)
M2D_DISCLOSURE_ATTACK_TIMEOUT = env.int("M2D_DISCLOSURE_ATTACK_TIMEOUT", default=600)
# A job that took a submission's reports and has not settled them in this long is taken as lost
# (its worker died); the reconciler sends the job again.
M2D_DISCLOSURE_LEASE_SECONDS = env.int("M2D_DISCLOSURE_LEASE_SECONDS", default=3 * 3600)
M2D_DISCLOSURE_MEMORY = env("M2D_DISCLOSURE_MEMORY", default="4g")
M2D_DISCLOSURE_CPUS = env.float("M2D_DISCLOSURE_CPUS", default=2.0)
# Which cases the model trained on and which it did not: a column of the data set's CSV.
M2D_DISCLOSURE_SPLIT_CSV = env("M2D_DISCLOSURE_SPLIT_CSV", default="clam-details-case-extrainfo.csv")
M2D_DISCLOSURE_CASE_COLUMN = env("M2D_DISCLOSURE_CASE_COLUMN", default="CasePath")
M2D_DISCLOSURE_LABEL_COLUMN = env("M2D_DISCLOSURE_LABEL_COLUMN", default="Groundtruth")
M2D_DISCLOSURE_POSITIVE_LABEL = env("M2D_DISCLOSURE_POSITIVE_LABEL", default="malignant")
M2D_DISCLOSURE_SPLIT_COLUMN = env("M2D_DISCLOSURE_SPLIT_COLUMN", default="Split")
M2D_DISCLOSURE_TRAIN_VALUES = tuple(env.list("M2D_DISCLOSURE_TRAIN_VALUES", default=["train"]))
M2D_DISCLOSURE_HELD_OUT_VALUES = tuple(
    env.list("M2D_DISCLOSURE_HELD_OUT_VALUES", default=["test", "validation", "val"])
)

# --- exports airlock --------------------------------------------------------------------------
# What a researcher may see of a build or run log (portal, e-mail, API, CLI): the last lines, and
# never more than this many bytes of them. Admins read whole logs.
M2D_LOG_TAIL_BYTES = env.int("M2D_LOG_TAIL_BYTES", default=8 * 1024)
# An export nobody asked to release is deleted after this many days; its owner is warned before.
M2D_EXPORT_RETENTION_DAYS = env.float("M2D_EXPORT_RETENTION_DAYS", default=30)
M2D_EXPORT_EXPIRY_WARNING_DAYS = env.float("M2D_EXPORT_EXPIRY_WARNING_DAYS", default=7)
M2D_EXPORT_SWEEP_SECONDS = env.float("M2D_EXPORT_SWEEP_SECONDS", default=3600)
# Files above this size are flagged for the reviewer.
M2D_EXPORT_LARGE_FILE_BYTES = env.int("M2D_EXPORT_LARGE_FILE_BYTES", default=100 * 1024**2)
# A release needs two different admins, neither of them the export's owner.
M2D_EXPORT_TWO_PERSON_RULE = env.bool("M2D_EXPORT_TWO_PERSON_RULE", default=False)
# How long a download link (and, with S3, the presigned URL behind it) stays valid.
M2D_EXPORT_LINK_SECONDS = env.int("M2D_EXPORT_LINK_SECONDS", default=15 * 60)
# Hashes of every data set file, rebuilt when the data set changes: flags exports that copy it.
M2D_DATASET_INDEX_DIR = Path(env("M2D_DATASET_INDEX_DIR", default=str(VAR_DIR / "dataset-index")))
# Where exports are kept after the run: "local" (under M2D_EXPORT_ROOT) or "s3" (a private bucket).
M2D_EXPORT_STORAGE = env("M2D_EXPORT_STORAGE", default="local")
if M2D_EXPORT_STORAGE == "s3":
    _EXPORTS_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("M2D_EXPORT_S3_BUCKET"),
            "location": env("M2D_EXPORT_S3_PREFIX", default="exports"),
            "endpoint_url": env("M2D_EXPORT_S3_ENDPOINT_URL", default=None),
            "region_name": env("M2D_EXPORT_S3_REGION", default=None),
            "access_key": env("M2D_EXPORT_S3_ACCESS_KEY_ID", default=None),
            "secret_key": env("M2D_EXPORT_S3_SECRET_ACCESS_KEY", default=None),
            "default_acl": None,
            "querystring_expire": M2D_EXPORT_LINK_SECONDS,
            "file_overwrite": True,
            "signature_version": "s3v4",
        },
    }
elif M2D_EXPORT_STORAGE == "local":
    _EXPORTS_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        # No URL route serves this folder: only the signed download view reads released files.
        "OPTIONS": {"location": str(M2D_EXPORT_ROOT)},
    }
else:
    raise environ.ImproperlyConfigured(f"M2D_EXPORT_STORAGE must be 'local' or 's3', not {M2D_EXPORT_STORAGE!r}")
# The model store's blobs (one per sha256): a local folder, or the exports' bucket under its own prefix.
M2D_MODEL_STORE_ROOT = Path(env("M2D_MODEL_STORE_ROOT", default=str(VAR_DIR / "models")))
if M2D_EXPORT_STORAGE == "s3":
    _MODELS_STORAGE = {
        **_EXPORTS_STORAGE,
        "OPTIONS": {
            **_EXPORTS_STORAGE["OPTIONS"],
            "location": env("M2D_MODEL_STORE_S3_PREFIX", default="models"),
            "file_overwrite": False,
        },
    }
else:
    _MODELS_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(M2D_MODEL_STORE_ROOT)},
    }
# The largest model card (m2d-model.json, or the card sent with a registration), in bytes of JSON.
M2D_MODEL_CARD_MAX_BYTES = env.int("M2D_MODEL_CARD_MAX_BYTES", default=64 * 1024)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "exports": _EXPORTS_STORAGE,
    "models": _MODELS_STORAGE,
}
CELERY_BEAT_SCHEDULE["provision-mlflow"] = {
    "task": "accounts.tasks.provision_mlflow",
    "schedule": M2D_RECONCILE_SECONDS,
    "options": {"queue": M2D_QUEUE_OPS},
}
CELERY_BEAT_SCHEDULE["send-due-mail"] = {
    "task": "ops.tasks.send_due_mail",
    "schedule": M2D_RECONCILE_SECONDS,
    "options": {"queue": M2D_QUEUE_OPS},
}
CELERY_BEAT_SCHEDULE["sweep-model-blobs"] = {
    "task": "modelstore.tasks.sweep_orphan_blobs",
    "schedule": 24 * 3600,
    "options": {"queue": M2D_QUEUE_OPS},
}
CELERY_BEAT_SCHEDULE["wake-batch-jobs"] = {
    "task": "serving.tasks.wake_batch_jobs",
    "schedule": M2D_RECONCILE_SECONDS,
    "options": {"queue": M2D_QUEUE_OPS},
}
CELERY_BEAT_SCHEDULE["reconcile-serving"] = {
    "task": "runner.tasks.reconcile_serving",
    "schedule": M2D_RECONCILE_SECONDS,
    "options": {"queue": M2D_QUEUE_OPS},
}
CELERY_BEAT_SCHEDULE["expire-exports"] = {
    "task": "exports.tasks.expire_exports",
    "schedule": M2D_EXPORT_SWEEP_SECONDS,
    "options": {"queue": M2D_QUEUE_OPS},
}

# --- operations -------------------------------------------------------------------------------
# Behind the TLS-terminating proxy (platform/): trust its X-Forwarded-Proto, send browsers to HTTPS.
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("DJANGO_CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
# Static files are served by the web process itself (whitenoise); production uses the hashed,
# compressed copies collected into the image.
STORAGES["staticfiles"]["BACKEND"] = env(
    "M2D_STATICFILES_STORAGE", default="django.contrib.staticfiles.storage.StaticFilesStorage"
)
# Where nothing was collected (tests, a fresh checkout), look files up per request rather than
# warn at every start.
WHITENOISE_AUTOREFRESH = DEBUG or not STATIC_ROOT.is_dir()
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH
# Every e-mail goes through a backend that records failures (admin, /metrics), then to the real one.
M2D_EMAIL_BACKEND = EMAIL_BACKEND
EMAIL_BACKEND = "ops.mail.MeteredEmailBackend"
# /metrics answers only with this token (Authorization: Bearer, or basic auth with it as the
# password); empty turns metrics off.
M2D_METRICS_TOKEN = env("M2D_METRICS_TOKEN", default="")
# What /readyz and `manage.py readyz` check in this process, and the folders it must be able to write.
M2D_READY_CHECKS = env.list("M2D_READY_CHECKS", default=["database", "redis", "docker", "mlflow", "storage"])
M2D_READY_STORAGE_PATHS = env.list("M2D_READY_STORAGE_PATHS", default=[str(MEDIA_ROOT), str(M2D_EXPORT_ROOT)])
M2D_READY_MIN_FREE_BYTES = env.int("M2D_READY_MIN_FREE_BYTES", default=1024**3)
# How long a worker's report on its Docker engine counts for the portal's /readyz.
M2D_ENGINE_REPORT_TTL = env.int("M2D_ENGINE_REPORT_TTL", default=180)
# text or json (one object per line, with submission_id on every line that concerns one).
M2D_LOG_FORMAT = env("M2D_LOG_FORMAT", default="text")
LOGGING = logging_config(M2D_LOG_FORMAT, env("M2D_LOG_LEVEL", default="INFO"))

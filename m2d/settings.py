"""Every setting of the platform, read from the environment in this one place.

Defaults run everything on one machine (`make demo`); production values come from the
environment or a `.env` file (see platform/.env.example).
"""

from pathlib import Path

import environ
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("M2D_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="m2d-local-development-key-change-me-in-production")
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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
    # lock up front so a read never has to be upgraded mid-transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    if test_name := env("M2D_TEST_DATABASE_NAME", default=""):
        DATABASES["default"]["TEST"] = {"NAME": test_name}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "submissions:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TZ", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_ROOT = Path(env("M2D_MEDIA_ROOT", default=str(VAR_DIR / "media")))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- mail -------------------------------------------------------------------------------------
EMAIL_URL = env("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="M2D <m2d@localhost>")
EMAIL_TIMEOUT = 20

# --- Celery -----------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_QUEUES = (Queue("build"), Queue("run"), Queue("default"))
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "runner.tasks.build_submission": {"queue": "build"},
    "runner.tasks.wake_run_slots": {"queue": "run"},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("M2D_BROKER_VISIBILITY_TIMEOUT", default=3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
M2D_RECONCILE_SECONDS = env.float("M2D_RECONCILE_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "reconcile": {"task": "runner.tasks.reconcile", "schedule": M2D_RECONCILE_SECONDS},
}

# --- intake -----------------------------------------------------------------------------------
M2D_MAX_UPLOAD_BYTES = env.int("M2D_MAX_UPLOAD_BYTES", default=100 * 1024**2)
M2D_MAX_UNCOMPRESSED_BYTES = env.int("M2D_MAX_UNCOMPRESSED_BYTES", default=1024**3)
M2D_MAX_FILES = env.int("M2D_MAX_FILES", default=10_000)

# --- images and runs --------------------------------------------------------------------------
M2D_BASE_IMAGE = env("M2D_BASE_IMAGE", default="python:3.11-slim-bookworm")
M2D_RUNTIME_IMAGE = env("M2D_RUNTIME_IMAGE", default="m2d-runtime:latest")
M2D_FORWARDER_IMAGE = env("M2D_FORWARDER_IMAGE", default="m2d-forwarder:latest")
M2D_GPU_IDS = env.list("M2D_GPU_IDS", default=[])
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
M2D_BUILD_TIMEOUT = env.int("M2D_BUILD_TIMEOUT", default=3600)
M2D_LOG_MAX_BYTES = env.int("M2D_LOG_MAX_BYTES", default=10 * 1024**2)
M2D_LOG_TAIL_LINES = env.int("M2D_LOG_TAIL_LINES", default=40)
M2D_TRACKING_MAX_BYTES = env.int("M2D_TRACKING_MAX_BYTES", default=1_000_000)
M2D_STOP_GRACE_SECONDS = env.int("M2D_STOP_GRACE_SECONDS", default=10)
M2D_KEEP_IMAGES = env.bool("M2D_KEEP_IMAGES", default=False)

# --- MLflow -----------------------------------------------------------------------------------
MLFLOW_URL = env("MLFLOW_URL", default="http://127.0.0.1:3001").rstrip("/")
MLFLOW_PUBLIC_URL = env("MLFLOW_PUBLIC_URL", default=MLFLOW_URL).rstrip("/")
MLFLOW_ADMIN_USERNAME = env("MLFLOW_ADMIN_USERNAME", default="m2d-admin")
MLFLOW_ADMIN_PASSWORD = env("MLFLOW_ADMIN_PASSWORD", default="m2d-local-mlflow-admin-pw")
# Key for MLflow passwords at rest (Fernet); derived from SECRET_KEY when not given.
M2D_ENCRYPTION_KEY = env("M2D_ENCRYPTION_KEY", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("M2D_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

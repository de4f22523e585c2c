"""Django settings for FairDerm, read from the environment only.

Every variable is optional except where noted; the defaults are the embedded set-up of
``make demo`` (SQLite and a filesystem broker under var/). A bad value stops start-up with
an ``ImproperlyConfigured`` error naming the variable. README.md lists every variable.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from backend.env import Env

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env(base_dir=BASE_DIR)

# --- Core -------------------------------------------------------------------------------------
DEBUG: bool = env.bool("DEBUG", False)
if DEBUG:
    SECRET_KEY: str = env.secret("SECRET_KEY", "insecure-development-key-do-not-use-in-production")
else:
    SECRET_KEY = env.secret("SECRET_KEY")
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", [])

# Where FairDerm keeps what it makes: the SQLite database, the broker folder of the embedded
# set-up, uploaded and imported images (MEDIA_ROOT) and job outputs (ARTIFACTS_ROOT).
VAR_DIR: Path = env.path("FAIRDERM_VAR_DIR", "var")
MEDIA_ROOT: Path = env.path("MEDIA_ROOT", str(VAR_DIR / "media"))
ARTIFACTS_ROOT: Path = env.path("ARTIFACTS_ROOT", str(VAR_DIR / "artifacts"))
MEDIA_URL = "/media/"  # never served directly: image views check permissions first

# Model caches. When set, they are exported so torch and huggingface_hub use them in every
# process; weights go under $TORCH_HOME/hub/checkpoints/ and $HF_HOME/hub/ (see README).
TORCH_HOME: Path | None = env.path("TORCH_HOME", None)
HF_HOME: Path | None = env.path("HF_HOME", None)
for _name, _value in (("TORCH_HOME", TORCH_HOME), ("HF_HOME", HF_HOME)):
    if _value is not None:
        os.environ[_name] = str(_value)

# Compute device for jobs: auto (CUDA when present, else CPU), cpu, mps, cuda or cuda:N.
COMPUTE_DEVICE: str = env.device("COMPUTE_DEVICE", "auto")
# Price of one GPU-hour, for the cost estimate shown beside each run.
GPU_PRICE_PER_HOUR: float = env.float("GPU_PRICE_PER_HOUR", 2.5, min_value=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "backend.accounts",
    "backend.datasets",
    "backend.runs",
    "backend.dashboard",
    "backend.reviews",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "backend.urls"
WSGI_APPLICATION = "backend.wsgi.application"
ASGI_APPLICATION = "backend.asgi.application"

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
                "backend.accounts.context_processors.roles",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
_database = env.database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'fairderm.sqlite3'}")
if _database["ENGINE"].endswith("sqlite3"):
    Path(_database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The demo runs the web server and a worker process on one SQLite file: WAL lets readers
    # go on while a job writes, IMMEDIATE transactions avoid lock-upgrade deadlocks. The test
    # database is a file too, so a worker subprocess can see what a test wrote.
    _database.setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    _database["TEST"] = {"NAME": str(Path(_database["NAME"]).with_name("test_fairderm.sqlite3"))}
else:
    _database.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", 60, min_value=0))
_database["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes): after AXES_FAILURE_LIMIT failed logins for one username
# from one IP address, that pair is locked for AXES_COOLOFF_MINUTES. Keying on the pair
# means colleagues behind one hospital NAT can still log in.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT: int = env.int("AXES_FAILURE_LIMIT", 3, min_value=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", 15, min_value=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation ---------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise) ----------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT: Path = env.path("STATIC_ROOT", str(VAR_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Files: one storage layer (backend/storage.py) --------------------------------------------
# Code reads and writes files on local disk under MEDIA_ROOT (images) and ARTIFACTS_ROOT (run
# folders); the "media" and "artifacts" storages are where they are kept for every machine.
#   local  the local roots are the storage: one machine, or a shared volume mounted at the
#          same path on every machine (FileSystemStorage; nothing is copied).
#   s3     an S3-compatible bucket (django-storages) keeps media/ and artifacts/; the local
#          roots are each machine's cache, filled on demand and uploaded after every write.
FILE_STORAGE: str = env.choice("FAIRDERM_STORAGE", ["local", "s3"], "local")
if FILE_STORAGE == "s3":
    _s3 = {
        "bucket_name": env.str("FAIRDERM_S3_BUCKET"),
        "endpoint_url": env.str("FAIRDERM_S3_ENDPOINT_URL", "") or None,
        "region_name": env.str("FAIRDERM_S3_REGION", "") or None,
        "access_key": env.secret("FAIRDERM_S3_ACCESS_KEY_ID", "") or None,
        "secret_key": env.secret("FAIRDERM_S3_SECRET_ACCESS_KEY", "") or None,
        "file_overwrite": True,  # names are chosen by the code (content hashes, run folders)
        "default_acl": None,
        "querystring_auth": True,  # files are served by views that check permissions
    }
    _prefix = env.str("FAIRDERM_S3_PREFIX", "").strip("/")
    _media: dict[str, Any] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**_s3, "location": f"{_prefix}/media".lstrip("/")},
    }
    _artifacts: dict[str, Any] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**_s3, "location": f"{_prefix}/artifacts".lstrip("/")},
    }
else:
    _media = {
        "BACKEND": "backend.storage.LocalRootStorage",
        "OPTIONS": {"root_setting": "MEDIA_ROOT"},
    }
    _artifacts = {
        "BACKEND": "backend.storage.LocalRootStorage",
        "OPTIONS": {"root_setting": "ARTIFACTS_ROOT"},
    }
STORAGES = {
    "default": _media,
    "media": _media,
    "artifacts": _artifacts,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security ---------------------------------------------------------------------------------
# Content-Security-Policy (django-csp): scripts only from our own static files, never inline;
# inline style attributes (progress bar widths) are allowed, remote content is not.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", 31_536_000, min_value=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD: bool = env.bool("SECURE_HSTS_PRELOAD", True)
    if env.bool("SECURE_PROXY_SSL_HEADER", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

DATA_UPLOAD_MAX_NUMBER_FILES = 100
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Dataset imports and uploads ------------------------------------------------------------
# Zip uploads (admin and API) are checked against these limits before anything is extracted,
# staged under UPLOAD_DIR/<uuid>/ (which workers must see, like MEDIA_ROOT) and removed once
# their import has ended. See backend/datasets/uploads.py.
UPLOAD_DIR: Path = env.path("FAIRDERM_UPLOAD_DIR", str(VAR_DIR / "uploads"))
UPLOAD_MAX_BYTES: int = env.int("FAIRDERM_UPLOAD_MAX_BYTES", 5 * 1024**3, min_value=1)
UPLOAD_MAX_FILES: int = env.int("FAIRDERM_UPLOAD_MAX_FILES", 100_000, min_value=1)
UPLOAD_MAX_RATIO: int = env.int("FAIRDERM_UPLOAD_MAX_RATIO", 100, min_value=2)
# Server folders that the admin and the API may import from (the CLI may read anything).
# Without this list, a web account could make the server read any file it can reach.
IMPORT_ROOTS: list[Path] = [
    Path(_root).expanduser() if Path(_root).expanduser().is_absolute() else BASE_DIR / _root
    for _root in env.list("FAIRDERM_IMPORT_ROOTS", [str(VAR_DIR)])
]
# Images with a side shorter than this are rejected on import.
IMPORT_MIN_IMAGE_SIDE: int = env.int("FAIRDERM_IMPORT_MIN_IMAGE_SIDE", 16, min_value=1)

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON that the database cannot store (NaN, Infinity, NUL, lone surrogates) is a 400
    # naming the field, not a 500 at save time (backend/api_input.py).
    "DEFAULT_PARSER_CLASSES": [
        "backend.api_input.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "FairDerm API",
    "DESCRIPTION": "Datasets, runs and results of the FairDerm synthetic-dermoscopy platform.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema names every field of every model: for the people who may read the data.
    "SERVE_PERMISSIONS": ["backend.accounts.access.CanViewData"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -----------------------------------------------------------------------------------
# Read by worker/celery.py (namespace CELERY_). The database row of a run is the source of
# truth; Celery only carries primary keys, so no result backend is used.
CELERY_BROKER_URL: str = env.broker("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_TASK_TIME_LIMIT: int = env.int("CELERY_TASK_TIME_LIMIT", 24 * 3600, min_value=60)
CELERY_TASK_SOFT_TIME_LIMIT: int = int(CELERY_TASK_TIME_LIMIT * 0.9)
# Redis redelivers an unacknowledged task after the visibility timeout: it must exceed the
# longest task, or a long training would start a second time while the first still runs.
CELERY_VISIBILITY_TIMEOUT: int = env.int(
    "CELERY_VISIBILITY_TIMEOUT", int(CELERY_TASK_TIME_LIMIT * 1.1), min_value=1
)
if CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT and not env.bool(
    "CELERY_ALLOW_SHORT_VISIBILITY", False
):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT: must exceed CELERY_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT} s), "
        f"got {CELERY_VISIBILITY_TIMEOUT} s"
    )
BROKER_DIR: Path = env.path("FAIRDERM_BROKER_DIR", str(VAR_DIR / "broker"))
# Extra kombu transport options, as a JSON object (e.g. Redis Sentinel's master_name, or
# unacked_restore_interval to redeliver a dead worker's tasks sooner).
CELERY_EXTRA_TRANSPORT_OPTIONS: dict = env.json_object("CELERY_BROKER_TRANSPORT_OPTIONS", {})
# A run whose heartbeat is older than this is considered dead (its lease has expired).
RUN_HEARTBEAT_SECONDS: int = env.int("RUN_HEARTBEAT_SECONDS", 15, min_value=1)
RUN_LEASE_SECONDS: int = env.int("RUN_LEASE_SECONDS", 120, min_value=2)
RUN_MAX_ATTEMPTS: int = env.int("RUN_MAX_ATTEMPTS", 3, min_value=1)
# Every worker requeues runs whose heartbeat stopped, once per lease period.
RUN_REAPER: bool = env.bool("RUN_REAPER", True)

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL: str = env.choice("LOG_LEVEL", ["DEBUG", "INFO", "WARNING", "ERROR"], "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

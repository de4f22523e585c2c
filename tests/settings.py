"""Settings for the test suite: backend.settings with test defaults for unset variables.

Set before backend.settings reads the environment, so the same module configures the
pytest process and the worker subprocesses the integration tests start. The filesystem
broker and the SQLite files live under var/test/, apart from the demo's var/.
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _isolate_xdist_worker(worker: str) -> None:
    """Give one pytest-xdist worker its own var folder and Redis database.

    Called once the defaults below are set (``FAIRDERM_VAR_DIR`` among them). Each xdist
    worker runs its own Celery worker subprocess (tests/conftest.py); on a shared broker the
    two would take each other's tasks. pytest-django already gives each xdist worker its own
    test database. Runs once per pytest process: the worker subprocesses it
    starts inherit the rewritten variables and the marker, and must not shift them again.
    """
    from urllib.parse import urlsplit, urlunsplit

    if os.environ.get("FAIRDERM_TEST_WORKER") == worker:
        return
    os.environ["FAIRDERM_TEST_WORKER"] = worker
    index = int(worker.removeprefix("gw"))
    os.environ["FAIRDERM_VAR_DIR"] = str(Path(os.environ["FAIRDERM_VAR_DIR"]) / worker)
    if "FAIRDERM_BROKER_DIR" in os.environ:  # else it follows the var folder
        os.environ["FAIRDERM_BROKER_DIR"] = str(Path(os.environ["FAIRDERM_BROKER_DIR"]) / worker)
    broker = urlsplit(os.environ.get("CELERY_BROKER_URL", ""))
    if broker.scheme in {"redis", "rediss"}:
        database = int(broker.path.strip("/") or 0) + index
        if database > 15:
            raise RuntimeError(
                f"CELERY_BROKER_URL: xdist worker {worker} needs Redis database {database}; "
                "Redis has 0-15 by default (use a lower database number or fewer workers)"
            )
        os.environ["CELERY_BROKER_URL"] = urlunsplit(broker._replace(path=f"/{database}"))


os.environ.setdefault("SECRET_KEY", "test-only-secret-key-8b0e0a4f2c1d4e6f9a7b3c5d1e2f4a6b8c0d2e4f")
os.environ.setdefault("FAIRDERM_VAR_DIR", str(_ROOT / "var" / "test"))
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Short leases so that fault tests finish quickly; the same in this process and in workers.
os.environ.setdefault("RUN_HEARTBEAT_SECONDS", "1")
os.environ.setdefault("RUN_LEASE_SECONDS", "4")
# Reaping is tested directly; a worker's reaper thread would race with those tests.
os.environ.setdefault("RUN_REAPER", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    _isolate_xdist_worker(os.environ["PYTEST_XDIST_WORKER"])

from backend.settings import *  # noqa: E402,F403
from backend.settings import STORAGES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Serve static files from the source folders (no collectstatic in tests).
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
# django-axes needs the request to authenticate, which Client.login does not pass; the
# lockout tests (tests/reviews/test_permissions.py) turn it on for themselves.
AXES_ENABLED = False

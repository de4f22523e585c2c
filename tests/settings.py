"""Settings for the test suite: backend.settings with test defaults for unset variables.

Set before backend.settings reads the environment, so the same module configures the
pytest process and the worker subprocesses the integration tests start. The filesystem
broker and the SQLite files live under var/test/, apart from the demo's var/.
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-8b0e0a4f2c1d4e6f9a7b3c5d1e2f4a6b8c0d2e4f")
os.environ.setdefault("FAIRDERM_VAR_DIR", str(_ROOT / "var" / "test"))
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Short leases so that fault tests finish quickly; the same in this process and in workers.
os.environ.setdefault("RUN_HEARTBEAT_SECONDS", "1")
os.environ.setdefault("RUN_LEASE_SECONDS", "4")
# Reaping is tested directly; a worker's reaper thread would race with those tests.
os.environ.setdefault("RUN_REAPER", "0")

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

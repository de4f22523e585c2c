"""Headers and sessions: a Content-Security-Policy without inline scripts on every page,
production cookies that are Secure, HttpOnly and SameSite, and sessions that rotate at login
and end at logout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse

from tests.accounts.factories import PASSWORD
from tests.security.test_permission_matrix import MATRIX
from tests.security.world import build_world, client_for
from tests.test_settings import _manage

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(?!\s*</script>)", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


@pytest.mark.django_db
def test_every_page_has_a_policy_without_inline_scripts_and_obeys_it() -> None:
    world = build_world()
    checked = 0
    for name, route in MATRIX.items():
        for role in ("reader_a", "ml_engineer"):
            if route.get[role] != 200:
                continue
            response = client_for(role, world).get(route.url(world))
            if not response.get("Content-Type", "").startswith("text/html"):
                continue
            policy = directives(response["Content-Security-Policy"])
            scripts = policy.get("script-src", policy.get("default-src", []))
            assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, name
            assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
            html = response.content.decode()
            assert not INLINE_SCRIPT.search(html), f"{name}: an inline <script>"
            assert not EVENT_HANDLER.search(html), f"{name}: an inline event handler"
            assert response["X-Content-Type-Options"] == "nosniff"
            checked += 1
    assert checked >= 15


@pytest.mark.django_db
def test_a_session_rotates_at_login_and_ends_at_logout() -> None:
    world = build_world()
    client = client_for("anonymous", world)
    client.get(reverse("login"))
    before = client.cookies.get("csrftoken")
    response = client.post(
        reverse("login"), {"username": "reader-a", "password": PASSWORD}, follow=False
    )
    assert response.status_code == 302
    session = client.cookies["sessionid"].value
    assert Session.objects.filter(session_key=session).exists()
    assert client.cookies.get("csrftoken") != before  # rotated at login
    client.post(reverse("logout"))
    assert not Session.objects.filter(session_key=session).exists()


def test_production_cookies_are_secure_http_only_and_same_site(tmp_path: Path) -> None:
    env = {
        "DEBUG": "0",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "fairderm.example.org",
        "FAIRDERM_VAR_DIR": str(tmp_path),
    }
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k)"
        " for k in ('SESSION_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', 'SESSION_COOKIE_SAMESITE',"
        " 'CSRF_COOKIE_SECURE', 'CSRF_COOKIE_SAMESITE', 'SECURE_SSL_REDIRECT',"
        " 'SECURE_CONTENT_TYPE_NOSNIFF')}))"
    )
    result = _manage(["shell", "-c", code], env)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_SSL_REDIRECT": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
    }


@pytest.mark.django_db
def test_the_admin_pages_ml_engineers_use_have_no_inline_scripts() -> None:
    world = build_world()
    client = client_for("ml_engineer", world)
    for url in (
        reverse("admin:index"),
        reverse("admin:datasets_dataset_changelist"),
        reverse("admin:datasets_dataset_change", args=[world.dataset.pk]),
        reverse("admin:datasets_dataset_import"),
        reverse("admin:runs_run_launch"),
        reverse("admin:runs_run_launch_kind", args=["train-lora"]),
        reverse("admin:reviews_study_changelist"),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), f"{url}: {INLINE_SCRIPT.search(html)}"
        assert not EVENT_HANDLER.search(html), url

"""Every URL the resolver knows × method × role → the status it must answer.

Roles: anonymous, reader A and reader B of one study, reader C of another, ML engineer, lead
and a superuser. The table is checked against the URL resolver, so a new route that nobody
put in the table fails ``test_every_route_is_in_the_matrix``.

Codes: ``LOGIN`` is the redirect to the login page; ``404`` hides what a role may not know
exists; read-only pages answer anything but GET/HEAD with 405 (``require_safe``); the API
answers 403 to those without the right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from backend.reviews.models import Study
from tests.reviews.factories import complete_answer
from tests.security.world import ROLES, World, build_world, client_for

pytestmark = pytest.mark.django_db

LOGIN = 302  # to the login page (checked: the Location names it)
ADMIN_LOGIN = "admin-login"


def everyone(code: int | str) -> dict[str, int | str]:
    return dict.fromkeys(ROLES, code)


def data_page(ok: int = 200) -> dict[str, int | str]:
    """ML engineers, leads and superusers; readers get 404; anonymous users the login page."""
    return {**everyone(404), "anonymous": LOGIN, "ml_engineer": ok, "lead": ok, "admin": ok}


def launcher(ok: int | str) -> dict[str, int | str]:
    """ML engineers and superusers only."""
    return {**data_page(ok), "lead": 404}


def lead_only(ok: int | str) -> dict[str, int | str]:
    """Leads and superusers: go/no-go targets and decisions."""
    return {**data_page(ok), "ml_engineer": 404}


def reader_a_only(ok: int) -> dict[str, int | str]:
    return {**everyone(404), "anonymous": LOGIN, "reader_a": ok}


def api(read: int, write: int | None = None) -> dict[str, int | str]:
    """DRF: 403 for anonymous users and readers; leads read; ML engineers write."""
    codes: dict[str, int | str] = {
        **everyone(403),
        "ml_engineer": read,
        "lead": read,
        "admin": read,
    }
    if write is not None:
        codes.update(ml_engineer=write, admin=write)
    return codes


SAFE_ONLY = everyone(405)


@dataclass(frozen=True)
class Route:
    url: Callable[[World], str]
    get: dict[str, int | str]
    post: dict[str, int | str]
    data: Callable[[World], dict[str, Any]] | None = None


def _path(name: str, *args: Callable[[World], Any]) -> Callable[[World], str]:
    return lambda w: reverse(name, args=[arg(w) for arg in args])


DATASET = lambda w: w.dataset.pk  # noqa: E731
IMAGE = lambda w: w.image.pk  # noqa: E731
RUN = lambda w: w.run.pk  # noqa: E731
STUDY = lambda w: w.study.pk  # noqa: E731
ASSIGNMENT_A = lambda w: w.assignment_a.pk  # noqa: E731
PROJECT = lambda w: w.project.pk  # noqa: E731

MATRIX: dict[str, Route] = {
    "dashboard:home": Route(
        _path("dashboard:home"), {**everyone(200), "anonymous": LOGIN}, SAFE_ONLY
    ),
    "healthz": Route(_path("healthz"), everyone(200), SAFE_ONLY),
    # Go/no-go: ML engineers and leads read; leads set targets and record decisions.
    "dashboard:project-list": Route(_path("dashboard:project-list"), data_page(), SAFE_ONLY),
    "dashboard:project-create": Route(
        _path("dashboard:project-create"), lead_only(200), lead_only(200)
    ),
    "dashboard:project": Route(_path("dashboard:project", PROJECT), data_page(), SAFE_ONLY),
    "dashboard:project-edit": Route(
        _path("dashboard:project-edit", PROJECT), lead_only(200), lead_only(200)
    ),
    "dashboard:project-decide": Route(
        _path("dashboard:project-decide", PROJECT),
        everyone(405),
        lead_only(302),
        data=lambda w: {"verdict": "INCOMPLETE", "note": "no evidence yet"},
    ),
    "dashboard:project-export-html": Route(
        _path("dashboard:project-export-html", PROJECT), data_page(), SAFE_ONLY
    ),
    "dashboard:project-export-pdf": Route(
        _path("dashboard:project-export-pdf", PROJECT), data_page(), SAFE_ONLY
    ),
    # Datasets and runs: for the people who work with the data; never for readers.
    "datasets:list": Route(_path("datasets:list"), data_page(), SAFE_ONLY),
    "datasets:detail": Route(_path("datasets:detail", DATASET), data_page(), SAFE_ONLY),
    "datasets:image-file": Route(_path("datasets:image-file", IMAGE), data_page(), SAFE_ONLY),
    "runs:list": Route(_path("runs:list"), data_page(), SAFE_ONLY),
    "runs:compare": Route(
        lambda w: reverse("runs:compare") + f"?a={w.run.pk}&b={w.run.pk}", data_page(), SAFE_ONLY
    ),
    "runs:detail": Route(_path("runs:detail", RUN), data_page(), SAFE_ONLY),
    "runs:progress": Route(_path("runs:progress", RUN), data_page(), SAFE_ONLY),
    "runs:sample": Route(_path("runs:sample", RUN), data_page(), SAFE_ONLY),
    "runs:cancel": Route(_path("runs:cancel", RUN), everyone(405), launcher(302)),
    # Reading: each reader reaches their own assignment and nothing else.
    "reviews:my-studies": Route(
        _path("reviews:my-studies"), {**everyone(200), "anonymous": LOGIN}, SAFE_ONLY
    ),
    "reviews:reading": Route(_path("reviews:reading", ASSIGNMENT_A), reader_a_only(302), SAFE_ONLY),
    "reviews:case": Route(
        lambda w: reverse("reviews:case", args=[w.assignment_a.pk, 1]),
        reader_a_only(200),
        reader_a_only(302),
        data=lambda w: complete_answer(),
    ),
    "reviews:submit": Route(
        _path("reviews:submit", ASSIGNMENT_A),
        {**everyone(405), "anonymous": LOGIN},
        reader_a_only(302),
    ),
    "reviews:image": Route(
        lambda w: reverse("reviews:image", args=[w.token("reader_a")]),
        reader_a_only(200),
        SAFE_ONLY,
    ),
    # Study administration: ML engineers build and change; leads watch; readers never.
    "reviews:study-list": Route(_path("reviews:study-list"), data_page(), SAFE_ONLY),
    "reviews:study-create": Route(_path("reviews:study-create"), launcher(200), launcher(200)),
    "reviews:study-detail": Route(_path("reviews:study-detail", STUDY), data_page(), SAFE_ONLY),
    "reviews:study-action": Route(
        lambda w: reverse("reviews:study-action", args=[w.study.pk, "close"]),
        launcher(405),
        launcher(302),
    ),
    # The key leaves the server only after the study closes (see the closed-study test).
    "reviews:export-csv": Route(_path("reviews:export-csv", STUDY), data_page(404), SAFE_ONLY),
    "reviews:export-json": Route(_path("reviews:export-json", STUDY), data_page(404), SAFE_ONLY),
    # Django's own account pages.
    "login": Route(_path("login"), everyone(200), everyone(200)),
    "logout": Route(_path("logout"), everyone(405), everyone(302)),
    "password_change": Route(
        _path("password_change"),
        {**everyone(200), "anonymous": LOGIN},
        {**everyone(200), "anonymous": LOGIN},
    ),
    "password_change_done": Route(
        _path("password_change_done"),
        {**everyone(200), "anonymous": LOGIN},
        {**everyone(405), "anonymous": LOGIN},
    ),
    "password_reset": Route(_path("password_reset"), everyone(200), everyone(200)),
    "password_reset_done": Route(_path("password_reset_done"), everyone(200), everyone(405)),
    "password_reset_confirm": Route(
        lambda w: reverse("password_reset_confirm", args=["MQ", "set-password"]),
        everyone(200),
        everyone(200),
    ),
    "password_reset_complete": Route(
        _path("password_reset_complete"), everyone(200), everyone(405)
    ),
    # The REST API.
    "api-root": Route(
        lambda w: "/api/", {**everyone(200), "anonymous": 403}, {**everyone(405), "anonymous": 403}
    ),
    "api-schema": Route(lambda w: "/api/schema/", api(200), api(403, write=405)),
    "api-docs": Route(lambda w: "/api/docs/", api(200), api(403, write=405)),
    "dataset-list": Route(lambda w: "/api/datasets/", api(200), api(403, write=400)),
    "dataset-detail": Route(
        lambda w: f"/api/datasets/{w.dataset.pk}/", api(200), api(403, write=405)
    ),
    "image-list": Route(lambda w: "/api/images/", api(200), api(403, write=405)),
    "image-detail": Route(lambda w: f"/api/images/{w.image.pk}/", api(200), api(403, write=405)),
    "training-set-list": Route(lambda w: "/api/training-sets/", api(200), api(403, write=400)),
    "training-set-detail": Route(
        lambda w: f"/api/training-sets/{w.training_set.pk}/", api(200), api(403, write=405)
    ),
    "run-list": Route(lambda w: "/api/runs/", api(200), api(403, write=400)),
    "run-detail": Route(lambda w: f"/api/runs/{w.run.pk}/", api(200), api(403, write=405)),
    "project-list": Route(lambda w: "/api/projects/", api(200), api(403, write=405)),
    "project-detail": Route(
        lambda w: f"/api/projects/{w.project.pk}/", api(200), api(403, write=405)
    ),
    "project-report": Route(
        lambda w: f"/api/projects/{w.project.pk}/report/", api(200), api(403, write=405)
    ),
    "run-cancel": Route(lambda w: f"/api/runs/{w.run.pk}/cancel/", api(405), api(403, write=200)),
}


def _routes(patterns: list[Any], prefix: str = "", namespace: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = (
                f"{namespace}:{pattern.namespace}"
                if namespace and pattern.namespace
                else (pattern.namespace or namespace)
            )
            found += _routes(pattern.url_patterns, prefix + str(pattern.pattern), inner or "")
        elif isinstance(pattern, URLPattern):
            name = (
                f"{namespace}:{pattern.name}"
                if namespace and pattern.name
                else (pattern.name or "")
            )
            found.append((prefix + str(pattern.pattern), name))
    return found


def all_routes() -> list[tuple[str, str]]:
    return _routes(get_resolver().url_patterns)


def test_every_route_is_in_the_matrix() -> None:
    missing = sorted(
        f"{pattern} ({name or 'unnamed'})"
        for pattern, name in all_routes()
        if not pattern.startswith("admin/") and name not in MATRIX
    )
    assert not missing, f"routes without a row in the permission matrix: {missing}"
    stale = sorted(set(MATRIX) - {name for _, name in all_routes()})
    assert not stale, f"matrix rows for routes that no longer exist: {stale}"


def _check(response: Any, expected: int | str, role: str, method: str, url: str) -> None:
    where = f"{method} {url} as {role}"
    if expected == LOGIN and role == "anonymous" and response.status_code == 302:
        location = response["Location"]
        assert "/login/" in location, f"{where}: redirected to {location}, not to the login page"
        return
    assert response.status_code == expected, f"{where}: {response.status_code}, expected {expected}"


@pytest.mark.parametrize("name", sorted(MATRIX))
def test_each_role_gets_the_expected_status(name: str) -> None:
    route = MATRIX[name]
    world = build_world()
    url = route.url(world)
    for role in ROLES:
        _check(client_for(role, world).get(url), route.get[role], role, "GET", url)
    for role in ROLES:
        # A fresh world per successful state change would be slow; each POST is independent
        # enough: closing a closed study or cancelling a cancelled run answers the same.
        data = route.data(world) if route.data else {}
        _check(client_for(role, world).post(url, data), route.post[role], role, "POST", url)


def test_every_admin_page_needs_a_staff_login() -> None:
    """Anonymous users, readers and leads (not staff) are sent to the admin login everywhere."""
    world = build_world()
    for pattern, name in all_routes():
        # The admin's own login and logout pages, and its translations, are for everyone.
        if not pattern.startswith("admin/") or name in (
            "admin:login", "admin:logout", "admin:jsi18n", ""
        ):  # fmt: skip
            continue
        url = _admin_url(name, pattern)
        for role in ("anonymous", "reader_a", "lead"):
            response = client_for(role, world).get(url)
            assert response.status_code == 302, (role, url, response.status_code)
            assert response["Location"].startswith("/admin/login/"), (role, url)


def _admin_url(name: str, pattern: str) -> str:
    if "<path:content_type_id>" in pattern:
        return reverse(name, args=["1", "1"])
    if "<path:object_id>" in pattern:
        return reverse(name, args=["1"])
    if "<id>" in pattern:
        return reverse(name, args=["1"])
    if "(?P<app_label>" in pattern:
        return reverse(name, kwargs={"app_label": "datasets"})
    if "(?P<url>" in pattern:  # the catch-all: any unknown admin path
        return "/admin/no-such-page/"
    if "<str:kind>" in pattern:
        return reverse(name, args=["generate"])
    return reverse(name)


@pytest.mark.parametrize(
    ("name", "engineer"),
    [
        ("admin:index", 200),
        ("admin:runs_run_launch", 200),
        ("admin:datasets_dataset_import", 200),
        ("admin:datasets_dataset_changelist", 200),
        ("admin:datasets_image_changelist", 200),
        ("admin:datasets_trainingset_changelist", 200),
        ("admin:runs_run_changelist", 200),
        ("admin:reviews_study_changelist", 200),
        ("admin:reviews_answer_changelist", 200),
        # Accounts and login records stay with superusers.
        ("admin:auth_user_changelist", 403),
        ("admin:auth_group_changelist", 403),
        ("admin:axes_accessattempt_changelist", 403),
    ],
)
def test_ml_engineers_manage_data_runs_and_studies_in_the_admin(name: str, engineer: int) -> None:
    world = build_world()
    assert client_for("ml_engineer", world).get(reverse(name)).status_code == engineer
    assert client_for("admin", world).get(reverse(name)).status_code == 200


def test_another_readers_ids_are_404_everywhere() -> None:
    """IDOR replay: reader B replays reader A's requests with A's ids and tokens."""
    world = build_world()
    a = world.assignment_a
    urls = [
        reverse("reviews:reading", args=[a.pk]),
        *(reverse("reviews:case", args=[a.pk, p]) for p in (1, 2, 3, 4)),
        *(slot.get_image_url() for slot in a.slots.all()),
    ]
    b = client_for("reader_b", world)
    for url in urls:
        assert b.get(url).status_code == 404, url
    assert b.post(reverse("reviews:case", args=[a.pk, 1]), complete_answer()).status_code == 404
    assert b.post(reverse("reviews:submit", args=[a.pk])).status_code == 404
    assert not a.answers.exists()


def test_every_state_change_needs_a_csrf_token() -> None:
    """POST without a CSRF token, as the role allowed to make the change: 403 every time."""
    world = build_world()
    for name, route in MATRIX.items():
        allowed = [r for r in ROLES if r != "anonymous" and route.post[r] not in (404, 405, 403)]
        if not allowed or name in ("login", "password_reset", "password_reset_confirm"):
            continue
        client = Client(enforce_csrf_checks=True)
        client.force_login(world.users[allowed[0]])
        data = route.data(world) if route.data else {}
        response = client.post(route.url(world), data)
        assert response.status_code == 403, f"{name} as {allowed[0]}: {response.status_code}"
    assert world.study.status == Study.Status.OPEN  # nothing changed


def test_the_login_form_itself_needs_a_csrf_token() -> None:
    world = build_world()
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("login"), {"username": "reader-a", "password": "x"})
    assert response.status_code == 403
    assert world.users["reader_a"].last_login is None

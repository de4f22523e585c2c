"""FairDerm's roles, kept as Django groups.

- ML engineers manage datasets and launch runs (and, in the demo, administer the site);
- dermatologists read blinded studies and never see dataset or run pages;
- leads read results and the go/no-go dashboard.

Superusers count as every role.
"""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    ML_ENGINEER = "ML engineers"
    DERMATOLOGIST = "Dermatologists"
    LEAD = "Leads"


#: Admin permissions per role ("app_label.action_model"). ML engineers manage datasets, runs
#: and studies in the admin; user accounts and login records stay with superusers. Readers
#: and leads are not staff and never use the admin.
ROLE_PERMISSIONS: dict[Role, tuple[str, ...]] = {
    Role.ML_ENGINEER: tuple(
        f"{app}.{action}_{model}"
        for app, models, actions in (
            ("datasets", ("dataset", "image", "trainingset"), ("view", "add", "change", "delete")),
            ("runs", ("run",), ("view", "add", "change")),
            ("runs", ("artifact", "runshard"), ("view",)),
            ("reviews", ("study",), ("view", "add", "change")),
            ("reviews", ("answer", "slot"), ("view",)),
        )
        for model in models
        for action in actions
    ),
    Role.DERMATOLOGIST: (),
    Role.LEAD: (),
}


def ensure_role_groups() -> dict[Role, Group]:
    """Create the role groups if missing, give each its permissions, and return them.

    Runs after every ``migrate`` (``AccountsConfig.ready``), so a new model's permissions
    reach the groups without a manual step. Permissions not created yet are skipped.
    """
    from django.contrib.auth.models import Permission
    from django.db.models import Q

    groups = {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
    for role, names in ROLE_PERMISSIONS.items():
        query = Q(pk__in=[])
        for name in names:
            app, codename = name.split(".", 1)
            query |= Q(content_type__app_label=app, codename=codename)
        groups[role].permissions.set(Permission.objects.filter(query))
    return groups


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[Role]:
    """The roles a user holds (cached on the user object for the request)."""
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_fairderm_roles", None)
    if cached is None:
        if getattr(user, "is_superuser", False):
            cached = set(Role)
        else:
            names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
            cached = {role for role in Role if role.value in names}
        user._fairderm_roles = cached  # type: ignore[union-attr]
    return cached


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: Role) -> bool:
    """True when the user holds at least one of ``roles``."""
    return bool(user_roles(user) & set(roles))


def can_view_data(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Datasets, runs and generated images: ML engineers and leads, never readers."""
    return has_role(user, Role.ML_ENGINEER, Role.LEAD)


def can_decide(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Go/no-go projects: setting targets and recording decisions are for leads."""
    return has_role(user, Role.LEAD)


def can_launch(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Importing datasets and launching or cancelling runs: ML engineers."""
    return has_role(user, Role.ML_ENGINEER)

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


def ensure_role_groups() -> dict[Role, Group]:
    """Create the role groups if missing and return them."""
    return {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}


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


def can_launch(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Importing datasets and launching or cancelling runs: ML engineers."""
    return has_role(user, Role.ML_ENGINEER)

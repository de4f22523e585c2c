"""Create (or reset) the demo accounts and print their credentials."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from backend.accounts.roles import Role, ensure_role_groups


@dataclass(frozen=True)
class DemoAccount:
    username: str
    role: Role
    description: str
    password: str = ""


DEMO_ACCOUNTS = (
    DemoAccount(
        "ml-engineer", Role.ML_ENGINEER, "ML engineer with admin rights: datasets, runs, /admin/"
    ),
    DemoAccount("reader-a", Role.DERMATOLOGIST, "dermatologist A: blinded reader studies"),
    DemoAccount("reader-b", Role.DERMATOLOGIST, "dermatologist B: blinded reader studies"),
    DemoAccount("lead", Role.LEAD, "project lead: results and the go/no-go dashboard"),
)


@transaction.atomic
def create_demo_users() -> list[DemoAccount]:
    """Create the demo accounts, giving each a fresh random password; return them."""
    groups = ensure_role_groups()
    user_model = get_user_model()
    created = []
    for account in DEMO_ACCOUNTS:
        password = secrets.token_urlsafe(9)
        user, _ = user_model.objects.get_or_create(username=account.username)
        is_admin = account.role is Role.ML_ENGINEER
        user.is_staff = is_admin
        user.is_superuser = is_admin
        user.set_password(password)
        user.save()
        user.groups.set([groups[account.role]])
        created.append(DemoAccount(account.username, account.role, account.description, password))
    return created


class Command(BaseCommand):
    help = "Create the demo accounts (ML engineer, two dermatologists, a lead) with new passwords."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print the accounts as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        accounts = create_demo_users()
        if options["json"]:
            self.stdout.write(json.dumps([asdict(a) for a in accounts], indent=2))
            return
        for account in accounts:
            self.stdout.write(
                f"  {account.username:<12} {account.password:<14} {account.description}"
            )

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_role_groups(sender: Any, **kwargs: Any) -> None:
    from backend.accounts.roles import ensure_role_groups

    ensure_role_groups()


class AccountsConfig(AppConfig):
    name = "backend.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        # After the last app's migrations, when every model's permissions exist.
        post_migrate.connect(_sync_role_groups, dispatch_uid="fairderm-role-groups")

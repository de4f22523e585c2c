from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_role_groups(sender: Any, **kwargs: Any) -> None:
    from django.apps import apps

    from backend.accounts.roles import ensure_role_groups

    # post_migrate is sent once per app; permissions exist for every app after the last one.
    if sender.label == list(apps.get_app_configs())[-1].label:
        ensure_role_groups()


class AccountsConfig(AppConfig):
    name = "backend.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        post_migrate.connect(_sync_role_groups, dispatch_uid="fairderm-role-groups")

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from backend.accounts.roles import Role, ensure_role_groups

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with a role (one of backend.accounts.roles.Role's values) and a known password."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(self, create: bool, extracted: str | None, **kwargs: Any) -> None:
        if extracted:
            groups = ensure_role_groups()
            self.groups.add(groups[Role(extracted)])
        if create:
            self.save()

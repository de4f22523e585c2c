from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.accounts.factories import PASSWORD


@pytest.fixture
def reader_c(db: None) -> Any:
    """A dermatologist invited to another study only."""
    from tests.accounts.factories import UserFactory

    return UserFactory(username="reader-c", role="Dermatologists")


def login(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    assert client.login(username=user.username, password=PASSWORD)
    return client

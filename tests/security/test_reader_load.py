"""The short form of the reader load test (benchmarks/reader_load.py has the full one)."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest

from backend.reviews.models import Answer, Assignment
from tests.accounts.factories import PASSWORD, UserFactory
from tests.conftest import ROOT
from tests.reviews.factories import make_study


def _driver() -> Any:
    spec = importlib.util.spec_from_file_location(
        "reader_load", ROOT / "benchmarks" / "reader_load.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules.setdefault("reader_load", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.django_db(transaction=True)
def test_readers_answering_at_once_lose_nothing_and_double_submits_count_once(
    live_server: Any, settings: Any
) -> None:
    # Plain HTTP on loopback: the production Secure cookies would never come back.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    driver = _driver()
    readers = [UserFactory(username=f"load-{i}", role="Dermatologists") for i in range(6)]
    study = make_study(readers, n=5, name="load")
    logins = [
        driver.ReaderLogin(
            r.username, PASSWORD, Assignment.objects.get(study=study, reader=r).pk, 10
        )
        for r in readers
    ]
    result = driver.run_load(live_server.url, logins, double_every=5)
    assert result.errors == []
    assert result.posts == 6 * (10 + 2)  # cases 5 and 10 posted twice by every reader
    assert Answer.objects.filter(assignment__study=study).count() == 6 * 10
    assert all(a.complete for a in Answer.objects.filter(assignment__study=study))
    assert len(result.image_ms) == 60 and len(result.answer_ms) == 72

"""The demo's reader study: made once from the phantom test split, reused, logins printed."""

from __future__ import annotations

from typing import Any

import pytest

from backend.accounts.management.commands.create_demo_users import create_demo_users
from backend.reviews.demo import demo_study, demo_study_lines
from backend.reviews.models import Study
from tests.reviews.factories import real_dataset, synthetic_dataset

pytestmark = pytest.mark.django_db


def test_the_demo_opens_one_matched_study_for_the_demo_readers_and_prints_their_logins() -> Any:
    accounts = create_demo_users()
    real, synthetic = real_dataset(per_stratum=3), synthetic_dataset(per_stratum=2)
    study = demo_study(real, synthetic, [a.username for a in accounts])
    assert study.status == Study.Status.OPEN
    assert (study.n_real, study.n_synthetic) == (4, 4)  # as many as the small sets allow
    assert sorted(study.assignments.values_list("reader__username", flat=True)) == [
        "reader-a",
        "reader-b",
    ]
    lines = "\n".join(demo_study_lines(study, accounts, "http://127.0.0.1:8000"))
    for account in accounts:
        if account.username.startswith("reader-"):
            assert f"{account.username}" in lines and account.password in lines
    assert "ml-engineer" not in lines.split("readers log in")[1].split("progress")[0]
    assert demo_study(real, synthetic, ["reader-a", "reader-b"]) == study
    assert Study.objects.count() == 1

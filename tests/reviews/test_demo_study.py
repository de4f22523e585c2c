"""The demo's reader study: made once from the phantom test split, reused, logins printed."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from backend.accounts.management.commands.create_demo_users import create_demo_users
from backend.reviews.demo import SIMULATED_READERS, demo_study, demo_study_lines, simulated_study
from backend.reviews.models import Answer, Study
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


def test_the_simulated_study_is_closed_flagged_and_answered_by_inactive_accounts() -> None:
    real, synthetic = real_dataset(per_stratum=3), synthetic_dataset(per_stratum=2)
    study = simulated_study(real, synthetic, skill=0.9, seed=3)
    assert study.status == Study.Status.CLOSED
    assert study.simulated_readers is True
    assert (study.n_real, study.n_synthetic) == (4, 4)
    assignments = list(study.assignments.select_related("reader").order_by("reader__username"))
    assert [a.reader.username for a in assignments] == list(SIMULATED_READERS)
    for assignment in assignments:
        assert assignment.is_submitted
        assert not assignment.reader.is_active
        assert not assignment.reader.has_usable_password()
        answers = Answer.objects.filter(assignment=assignment)
        assert answers.count() == 8 and not answers.filter(judgement="").exists()
    # skilled simulated readers call most cases right
    right = sum(
        (a.judgement == "synthetic") == (a.case.origin == "synthetic")
        for a in Answer.objects.filter(assignment__study=study).select_related("case")
    )
    assert right >= 0.6 * 24
    assert simulated_study(real, synthetic) == study
    assert Study.objects.count() == 1


@pytest.mark.parametrize("make", [demo_study, simulated_study])
def test_without_a_matched_test_case_the_demo_studies_fail_naming_both_sets(make: Any) -> None:
    real, synthetic = real_dataset(per_stratum=0), synthetic_dataset(per_stratum=2)
    arguments = (real, synthetic, []) if make is demo_study else (real, synthetic)
    with pytest.raises(ValidationError) as raised:
        make(*arguments)
    message = " ".join(raised.value.messages)
    assert real.name in message and synthetic.name in message and "test split" in message
    assert Study.objects.count() == 0

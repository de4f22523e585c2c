"""Benchmark budgets count from the process's start, as run_all.sh's hard limits do."""

from __future__ import annotations

import time

import pytest

from benchmarks import _perf
from benchmarks._perf import Budget, Peaks, process_age

LOADED = time.monotonic()  # after this process started (pytest, torch, this module)


def test_process_age_counts_from_before_this_module_was_imported() -> None:
    assert process_age() >= time.monotonic() - LOADED > 0


def test_a_scripts_imports_are_spent_from_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_perf, "process_age", lambda: 6.0)  # 6 s of imports before the budget
    budget = Budget(10.0, since_process_start=True)
    assert 6.0 <= budget.spent() < 6.5
    assert budget.allows(3.0) and not budget.allows(4.5)


def test_inside_a_longer_process_the_budget_counts_from_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A benchmark's main() called by a test late in a long pytest process.
    monkeypatch.setattr(_perf, "process_age", lambda: 900.0)
    assert Budget(10.0).allows(9.5)
    monkeypatch.setattr(_perf, "process_age", lambda: 0.0)  # no process table
    assert Budget(10.0, since_process_start=True).allows(9.5)


def test_tf32_is_measured_only_on_cuda_and_never_borrows_another_peak() -> None:
    peaks = Peaks("cpu", ("fp32", "tf32"))
    assert "tf32" not in peaks.measured and peaks.measured["fp32"] > 0
    assert peaks.peak("tf32") == (None, "unknown")

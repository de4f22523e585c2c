"""benchmarks/gpu/run_all.sh: every part's budget inside its hard limit, all inside the total."""

from __future__ import annotations

import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu" / "run_all.sh"
README = SCRIPT.with_name("README.md")


def gpu_parts() -> list[tuple[str, int, float]]:
    """(name, hard limit, --budget-s) of each part of the GPU (not --smoke) branch."""
    text = SCRIPT.read_text()
    start = text.index("\nelse\n")
    gpu_branch = text[start : text.index("\nfi\n", start)]
    # A part's command may continue over several lines ending in a backslash.
    commands = re.findall(r"^\s*part (\w+) (\d+) ((?:.*\\\n)*.*)$", gpu_branch, re.M)
    return [
        (name, int(limit), float(re.search(r"--budget-s (\d+)", rest).group(1)))  # type: ignore[union-attr]
        for name, limit, rest in commands
    ]


def total_seconds() -> int:
    """run_all.sh's default RUN_ALL_SECONDS."""
    return int(re.search(r"RUN_ALL_SECONDS:-(\d+)", SCRIPT.read_text()).group(1))  # type: ignore[union-attr]


def test_each_budget_ends_inside_its_hard_limit_and_all_fit_the_total() -> None:
    parts = gpu_parts()
    assert [name for name, _, _ in parts] == ["generation", "sd_lora", "conditional", "inception"]
    for name, limit, budget in parts:
        assert budget <= limit - 5, name  # the part writes its JSON and exits before the kill
    total = total_seconds()
    # About 10 s go to installing the wheels and the environment record before the parts.
    assert sum(limit for _, limit, _ in parts) + 10 <= total


def test_the_documented_device_call_leaves_the_script_time_to_finish() -> None:
    total = total_seconds()
    timeout = int(re.search(r"`timeout_s`: `(\d+)`", README.read_text()).group(1))  # type: ignore[union-attr]
    assert total + 20 <= timeout <= 600  # the summary after the parts; the tool's cap

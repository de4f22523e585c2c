"""``manage.py demo`` end to end on the embedded default: the chain, the served page, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import services_required, wait_for_js
from tests.web.test_browser import CHROMIUM_FLAGS, chromium_path

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def demo_env(var_dir: Path) -> dict[str, str]:
    """The embedded default: no DATABASE_URL or CELERY_BROKER_URL, whatever CI exports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        {
            "DEBUG": "1",
            "FAIRDERM_VAR_DIR": str(var_dir),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    for name in ("MEDIA_ROOT", "ARTIFACTS_ROOT", "SECRET_KEY", "FAIRDERM_BROKER_DIR"):
        env.pop(name, None)
    return env


def processes_with_env(entry: str) -> list[int]:
    """PIDs of live processes whose environment holds ``entry`` (the demo's children)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.encode() in environ:
            found.append(int(proc.name))
    return found


def read_until(
    process: subprocess.Popen[str], pattern: str, timeout: float, seen: list[str]
) -> re.Match[str]:
    """Read the demo's output line by line until ``pattern`` matches (fail on exit or timeout)."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                pytest.fail(
                    f"demo exited ({process.returncode}) before {pattern!r}:\n{''.join(seen)[-4000:]}"
                )
            time.sleep(0.1)
            continue
        seen.append(line)
        match = regex.search(line)
        if match:
            return match
    pytest.fail(f"demo did not print {pattern!r} within {timeout} s:\n{''.join(seen)[-4000:]}")


def test_the_demo_runs_the_chain_serves_the_balanced_set_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--profile", "quick", "--port", str(port)],
        cwd=ROOT,
        env=demo_env(tmp_path / "var"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        lead_password = read_until(process, r"^\s+lead\s+(\S+)\s", 120, seen).group(1)
        counts = read_until(process, r"(\d+) synthetic images, per FST: (.*)$", 400, seen)
        assert counts.group(1) == "24"
        assert counts.group(2).strip() == "1: 4, 2: 4, 3: 4, 4: 4, 5: 4, 6: 4"
        grid_url = read_until(process, r"FST x diagnosis grid: (\S+)", 10, seen).group(1)
        dashboard_url = read_until(process, r"go/no-go dashboard:\s+(\S+)", 10, seen).group(1)
        read_until(process, r"Serving http://127\.0\.0\.1", 10, seen)
        check_grid_in_browser(grid_url, port, lead_password, dashboard_url)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(seen) + (process.stdout.read() if process.stdout else "")
    assert "Stopped the worker and the web server." in output
    # The dashboard judged the demo's own runs: 24 images miss the 60k target (NO-GO), and
    # stand-in weights, phantom data and simulated readers never count as a pass.
    assert "  verdict: NO-GO" in output
    table = dict(
        re.findall(
            r"^    (Synthetic set size|FID|Expert realism of synthetic images)\s.*\s(pass|fail|pending|not comparable)$",
            output,
            re.M,
        )
    )
    assert table == {
        "Synthetic set size": "fail",
        "FID": "not comparable",
        "Expert realism of synthetic images": "not comparable",
    }, output[-3000:]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the web server outlived the demo"
    leftover = subprocess.run(
        ["pgrep", "-f", f"FAIRDERM_VAR_DIR={tmp_path}"], capture_output=True, text=True
    )
    assert leftover.stdout.strip() == ""
    assert not list((tmp_path / "var" / "broker" / "queue").glob("*.msg"))

    again = subprocess.run(
        [sys.executable, "manage.py", "demo", "--profile", "quick", "--no-serve"],
        cwd=ROOT,
        env=demo_env(tmp_path / "var"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("reusing") >= 3  # phantom files, dataset and the finished runs


def check_grid_in_browser(grid_url: str, port: int, password: str, dashboard_url: str) -> None:
    executable = chromium_path()
    if executable is None:
        if services_required():
            pytest.fail("Chromium is required but was not found")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        page: Any = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/accounts/login/")
        page.fill("#id_username", "lead")
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url(f"http://127.0.0.1:{port}/")
        assert page.locator("#latest-synthetic img").count() == 24
        page.goto(grid_url)
        assert page.locator("#sample-grid tbody tr").count() == 6
        wait_for_js(
            page, "Array.from(document.querySelectorAll('#sample-grid img')).every(i => i.complete)"
        )
        widths = page.eval_on_selector_all(
            "#sample-grid img", "els => els.map(e => e.naturalWidth)"
        )
        assert len(widths) == 24 and all(w == 32 for w in widths)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(dashboard_url)
        assert page.locator("#verdict-value").inner_text() == "NO-GO"
        assert page.locator("#target-set_size").get_attribute("data-status") == "fail"
        assert page.locator("#target-realism").get_attribute("data-status") == "not comparable"
        assert "simulated readers" in page.locator("#reader-study h2").inner_text()
        assert page.locator("#failure-modes .failure").count() == 3
        assert page.locator("#chart-accuracy circle").count() >= 2
        assert page.locator("#sample-grid img").count() >= 6
        assert not errors, errors
        browser.close()

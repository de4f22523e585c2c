"""The pages in a real headless Chromium (Debian's build, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.accounts.factories import PASSWORD
from tests.conftest import services_required, wait_for_js
from tests.datasets.factories import DatasetFactory, ImageFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("CHROMIUM_PATH")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        if services_required():
            pytest.fail("Chromium is required (apt-get install chromium) but was not found")
        pytest.skip("no chromium on this machine")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls made by the test
    # itself are synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        yield instance
        instance.close()


def log_in(page: Any, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def test_an_ml_engineer_sees_the_fst_grid_with_decoded_images(
    browser: Any, live_server: Any, ml_engineer: Any
) -> None:
    dataset = DatasetFactory(name="synthetic-demo")
    for fst in (1, 6):
        for dx in ("nevus", "melanoma"):
            ImageFactory(dataset=dataset, fst=fst, diagnosis=dx)
    dataset.refresh_counts()
    page = browser.new_page()
    log_in(page, live_server.url, ml_engineer.username)
    page.goto(f"{live_server.url}{dataset.get_absolute_url()}")
    rows = page.locator("#sample-grid tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("th").inner_text() == "I"
    assert rows.nth(1).locator("th").inner_text() == "VI"
    images = page.locator("#sample-grid img")
    assert images.count() == 4
    wait_for_js(
        page, "Array.from(document.querySelectorAll('#sample-grid img')).every(i => i.complete)"
    )
    widths = page.eval_on_selector_all("#sample-grid img", "els => els.map(e => e.naturalWidth)")
    assert widths == [16, 16, 16, 16]
    page.close()


def test_a_reader_cannot_open_a_dataset_page(browser: Any, live_server: Any, reader_a: Any) -> None:
    dataset = DatasetFactory(name="hidden")
    page = browser.new_page()
    log_in(page, live_server.url, reader_a.username)
    assert "Your reader studies" in page.content()
    assert page.locator("nav a", has_text="Datasets").count() == 0
    response = page.goto(f"{live_server.url}{dataset.get_absolute_url()}")
    assert response.status == 404
    page.close()

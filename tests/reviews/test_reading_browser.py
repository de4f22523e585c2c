"""A reader study in a real headless Chromium (Debian's build, driven by Playwright)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from backend.reviews.models import Answer, Assignment
from tests.conftest import wait_for, wait_for_js
from tests.reviews.factories import make_study
from tests.web.test_browser import browser, log_in  # noqa: F401 (the browser fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ABCD = ("asymmetry_realistic", "border_realistic", "colour_realistic", "diameter_realistic")


def wait_for_image(page: Any) -> None:
    wait_for_js(
        page,
        "(() => { const i = document.getElementById('case-image');"
        " return i.complete && i.naturalWidth === 32; })()",
    )


def wait_for_progress(page: Any, answered: int) -> None:
    wait_for_js(page, f"document.getElementById('progress').value === {answered}")


def case_url(base: str, assignment: Assignment, position: int) -> str:
    return f"{base}/reviews/reading/{assignment.pk}/case/{position}/"


def test_a_reader_answers_with_mouse_and_keyboard_resumes_after_a_reload_and_submits(
    browser: Any,  # noqa: F811
    live_server: Any,
    reader_a: Any,
    reader_b: Any,
) -> None:
    study = make_study([reader_a, reader_b], n=2)
    assignment = Assignment.objects.get(study=study, reader=reader_a)
    base = live_server.url
    page = browser.new_page()
    errors: list[str] = []  # script errors and policy violations (not a missing favicon)
    page.on(
        "console",
        lambda message: (
            errors.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, base, reader_a.username)
    page.click("#my-studies a:has-text('Start')")
    page.wait_for_url(case_url(base, assignment, 1))
    wait_for_image(page)
    assert page.get_attribute("#case-image", "alt") == "Case 1"
    assert page.inner_text("h1").endswith("Case 1 of 4")

    # Case 1 with the mouse.
    page.click("label:has(input[name=judgement][value=synthetic])")
    page.click("label:has(input[name=confidence][value='4'])")
    page.click("label:has(input[name=realism][value='6'])")
    for name in ABCD:
        page.click(f"label:has(input[name={name}][value=True])")
    page.click("#q-scores summary")
    page.fill("input[name=border_score]", "3")
    page.fill("textarea[name=comment]", "irregular network")
    wait_for_progress(page, 1)
    page.click("#next-case")
    page.wait_for_url(case_url(base, assignment, 2))
    wait_for_image(page)

    # Case 2 with the keyboard, zoom included.
    for key in ("r", "3", "Shift+Digit5", "a", "b", "c", "d", "c"):
        page.keyboard.press(key)
    page.keyboard.press("Equal")
    assert page.eval_on_selector("#case-image", "i => i.style.width") == "150%"
    wait_for_progress(page, 2)
    page.keyboard.press("n")
    page.wait_for_url(case_url(base, assignment, 3))

    # Case 3: half answered, then the page is reloaded and the study resumed.
    page.keyboard.press("s")
    wait_for(
        lambda: Answer.objects.filter(assignment=assignment, judgement="synthetic").count() == 2,
        timeout=10,
        message="the autosave of case 3",
    )
    page.reload()
    wait_for_image(page)
    assert page.is_checked("input[name=judgement][value=synthetic]")
    page.goto(f"{base}/reviews/")
    page.click("#my-studies a:has-text('Resume')")
    page.wait_for_url(case_url(base, assignment, 3))
    assert page.is_checked("input[name=judgement][value=synthetic]")
    assert page.get_attribute("#case-image", "alt") == "Case 3"
    for key in ("1", "Shift+Digit7", "a", "b", "c", "d"):
        page.keyboard.press(key)
    wait_for_progress(page, 3)
    page.keyboard.press("n")
    page.wait_for_url(case_url(base, assignment, 4))
    wait_for_image(page)
    assert page.is_disabled("#submit-study")
    for key in ("s", "5", "Shift+Digit1", "a", "b", "c", "d"):
        page.keyboard.press(key)
    wait_for_progress(page, 4)
    assert page.is_enabled("#submit-study")
    page.click("#submit-study")
    page.wait_for_selector("#finished")
    assert "submitted" in page.inner_text("#finished")
    assert errors == [], errors  # e.g. a Content-Security-Policy violation
    page.close()

    assignment.refresh_from_db()
    assert assignment.is_submitted
    answers = {
        a.case_id: a for a in Answer.objects.filter(assignment=assignment).select_related("case")
    }
    by_position = {s.position: answers[s.case_id] for s in assignment.slots.all()}
    assert all(a.complete and a.reading_ms > 0 for a in by_position.values())
    first, second, third = by_position[1], by_position[2], by_position[3]
    assert (first.judgement, first.confidence, first.realism) == ("synthetic", 4, 6)
    assert first.border_score == 3 and first.comment == "irregular network"
    assert (second.judgement, second.confidence, second.realism) == ("real", 3, 5)
    assert second.colour_realistic is False and second.asymmetry_realistic is True
    assert (third.judgement, third.confidence, third.realism) == ("synthetic", 1, 7)


def seen_order(page: Any, base: str, assignment: Assignment) -> list[str]:
    """The images as this reader sees them, case 1 to n (hashes of the bytes served)."""
    hashes = []
    for position in range(1, assignment.slots.count() + 1):
        page.goto(case_url(base, assignment, position))
        src = page.get_attribute("#case-image", "src")
        hashes.append(hashlib.sha256(page.request.get(f"{base}{src}").body()).hexdigest())
    return hashes


def test_a_second_reader_sees_another_order_and_cannot_open_the_first_readers_cases(
    browser: Any,  # noqa: F811
    live_server: Any,
    reader_a: Any,
    reader_b: Any,
) -> None:
    study = make_study([reader_a, reader_b], n=2)
    first = Assignment.objects.get(study=study, reader=reader_a)
    second = Assignment.objects.get(study=study, reader=reader_b)
    base = live_server.url
    page_a = browser.new_page()
    log_in(page_a, base, reader_a.username)
    order_a = seen_order(page_a, base, first)
    page_a.click("label:has(input[name=judgement][value=real])")
    wait_for(lambda: Answer.objects.filter(assignment=first).exists(), timeout=10)
    src_a = page_a.get_attribute("#case-image", "src")

    page_b = browser.new_page()
    log_in(page_b, base, reader_b.username)
    order_b = seen_order(page_b, base, second)
    assert sorted(order_a) == sorted(order_b) and order_a != order_b
    assert page_b.goto(case_url(base, first, 4)).status == 404
    assert page_b.request.get(f"{base}{src_a}").status == 404
    assert page_b.goto(f"{base}/reviews/reading/{first.pk}/").status == 404
    assert not re.search(r"reader-a", page_b.content())
    page_a.close()
    page_b.close()

"""Blinding: nothing a reader can fetch tells real from synthetic, or names where a case came from.

The crawl walks everything reader A can reach while reading a whole study (pages, autosave
JSON, images, and their headers) and looks for the key, source names, dataset names, seeds
and model names. Pages of real and of synthetic cases must be the same apart from the case
number and the per-reader tokens.
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from backend.reviews.models import Assignment, Slot, Study
from tests.reviews.conftest import login
from tests.reviews.factories import (
    GENERATION_SEED,
    MODEL_NAME,
    REAL_NAME,
    STUDY_SEED,
    SYNTHETIC_NAME,
    complete_answer,
    make_study,
)
from tests.validation.test_study_copies import png_chunks

pytestmark = pytest.mark.django_db

VARYING_HEADERS = {"date"}


def forbidden_strings(study: Study) -> list[str]:
    """What must never reach a reader's browser."""
    values = [
        REAL_NAME,
        SYNTHETIC_NAME,
        MODEL_NAME,
        study.name,
        study.real_dataset.name,
        study.synthetic_dataset.name,
        str(STUDY_SEED),
        str(study.seed),
        str(GENERATION_SEED),
        "provenance",
        "is_synthetic",
    ]
    for assignment in study.assignments.all():
        values.append(str(assignment.order_seed))
    for case in study.cases.select_related("image"):
        values += [
            str(case.uid),
            case.file,
            case.file.rsplit("/", 1)[-1],
            case.sha256,
            case.image.image_id,
            case.image.file.rsplit("/", 1)[-1],
            case.image.sha256,
        ]
    return values


def headers_of(response: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items()}


def crawl(client: Client, assignment: Assignment) -> list[tuple[str, dict[str, str], bytes]]:
    """Read the whole study as the reader does; return (url, headers, body) of every response."""
    seen = []

    def get(url: str, **kwargs: Any) -> Any:
        response = client.get(url, **kwargs)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        seen.append((url, headers_of(response), body))
        return response

    get(reverse("dashboard:home"))
    get(reverse("reviews:my-studies"))
    get(reverse("reviews:reading", args=[assignment.pk]))
    for slot in assignment.slots.all():
        url = reverse("reviews:case", args=[assignment.pk, slot.position])
        get(url)
        get(slot.get_image_url())
        response = client.post(url, complete_answer(), headers={"X-Requested-With": "fetch"})
        seen.append((url + " (autosave)", headers_of(response), response.content))
        response = client.post(url, complete_answer(go="next"))
        seen.append((url + " (form)", headers_of(response), response.content))
    response = client.post(reverse("reviews:submit", args=[assignment.pk]))
    seen.append(("submit", headers_of(response), response.content))
    get(reverse("reviews:reading", args=[assignment.pk]))
    return seen


def test_nothing_a_reader_can_fetch_names_the_key_or_the_sources(
    reader_a: Any, reader_b: Any
) -> None:
    study = make_study([reader_a, reader_b], n=4)
    assignment = Assignment.objects.get(study=study, reader=reader_a)
    responses = crawl(login(reader_a), assignment)
    assert len(responses) > 3 * 8
    forbidden = forbidden_strings(study)
    for url, headers, body in responses:
        text = (repr(headers) + body.decode("latin-1")).lower()
        for needle in forbidden:
            assert needle.lower() not in text, (url, needle)
        assert not re.search(r"(?<![-\w])origin(?![-\w])", text), url  # not "same-origin"
        # "real"/"synthetic" appear only as the question's two options, never as a case's key.
        if headers.get("content-type", "").startswith("application/json"):
            assert not re.search(r"real|synth|fake|gen", body.decode()), (url, body)
    assignment.refresh_from_db()
    assert assignment.is_submitted


def test_case_pages_of_real_and_synthetic_cases_are_identical_but_for_number_and_token(
    reader_a: Any,
) -> None:
    study = make_study([reader_a], n=4)
    assignment = study.assignments.get()
    client = login(reader_a)
    pages: dict[str, set[str]] = {"real": set(), "synthetic": set()}
    slots = list(assignment.slots.select_related("case"))
    for slot in slots[1:-1]:  # the first and the last page lack one navigation button
        html = client.get(
            reverse("reviews:case", args=[assignment.pk, slot.position])
        ).content.decode()
        assert f'alt="Case {slot.position}"' in html
        html = html.replace(slot.token, "TOKEN")
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "CSRF", html)
        html = re.sub(r"\d+", "N", html)
        pages[slot.case.origin].add(html)
    assert len(pages["real"]) == len(pages["synthetic"]) == 1
    assert pages["real"] == pages["synthetic"]


def test_images_are_served_with_identical_headers_and_sizes(reader_a: Any) -> None:
    study = make_study([reader_a], n=4)
    assignment = study.assignments.get()
    client = login(reader_a)
    by_origin: dict[str, list[dict[str, str]]] = {"real": [], "synthetic": []}
    sizes = set()
    for slot in assignment.slots.select_related("case"):
        response = client.get(slot.get_image_url())
        assert response.status_code == 200
        headers = headers_of(response)
        assert "last-modified" not in headers and "etag" not in headers
        assert "content-disposition" not in headers
        assert headers["cache-control"] == "private, no-store"
        assert headers["content-type"] == "image/png"
        with PILImage.open(io.BytesIO(response.content)) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32))
        sizes.add(len(response.content))
        by_origin[slot.case.origin].append(
            {k: v for k, v in headers.items() if k not in VARYING_HEADERS}
        )
    assert sizes == {study.copy_bytes}
    distinct = {repr(sorted(h.items())) for hs in by_origin.values() for h in hs}
    assert len(distinct) == 1


def test_the_same_image_has_a_different_address_for_each_reader(
    reader_a: Any, reader_b: Any
) -> None:
    study = make_study([reader_a, reader_b], n=2)
    for case in study.cases.all():
        tokens = list(Slot.objects.filter(case=case).values_list("token", flat=True))
        assert len(tokens) == 2 and tokens[0] != tokens[1]
        assert all(len(t) >= 22 for t in tokens)  # 128 bits, URL-safe base64


def test_a_saved_answer_gets_no_feedback(reader_a: Any) -> None:
    study = make_study([reader_a], n=2)
    assignment = study.assignments.get()
    slot = assignment.slots.get(position=1)
    client = login(reader_a)
    url = reverse("reviews:case", args=[assignment.pk, 1])
    wrong = "real" if slot.case.origin == "synthetic" else "synthetic"
    right = slot.case.origin
    replies = [
        client.post(url, complete_answer(judgement=j), headers={"X-Requested-With": "fetch"}).json()
        for j in (wrong, right)
    ]
    assert replies[0] == replies[1] == {"saved": True, "complete": True, "answered": 1, "total": 4}


def test_non_visual_features_are_the_same_for_every_case(reader_a: Any) -> None:
    """What a shortcut classifier could use besides the pixels: size, header bytes, chunk
    layout, response headers and URL. Each has one value over the whole study."""
    study = make_study([reader_a], n=4)
    assignment = study.assignments.get()
    client = login(reader_a)
    features: dict[str, set[Any]] = {
        "size": set(),
        "head": set(),
        "chunks": set(),
        "headers": set(),
        "url": set(),
    }
    for slot in assignment.slots.all():
        url = slot.get_image_url()
        response = client.get(url)
        data = response.content
        features["size"].add(len(data))
        features["head"].add(data[:41])  # signature, IHDR, and the first IDAT's length
        features["chunks"].add(tuple(png_chunks(data)))
        headers = headers_of(response)
        features["headers"].add(
            repr(sorted((k, v) for k, v in headers.items() if k not in VARYING_HEADERS))
        )
        features["url"].add((url.replace(slot.token, ""), len(slot.token)))
    assert {name: len(values) for name, values in features.items()} == dict.fromkeys(features, 1)


def test_images_are_rendered_at_creation_never_when_served(
    reader_a: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On-demand encoding would make the first fetch of a case slower by its content."""
    study = make_study([reader_a], n=2)
    assignment = study.assignments.get()

    def refuse(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("an image was encoded while serving")

    monkeypatch.setattr("backend.reviews.services.study_copy", refuse)
    monkeypatch.setattr("validation.study_copies.study_copy", refuse)
    client = login(reader_a)
    for slot in assignment.slots.all():
        response = client.get(slot.get_image_url())
        assert response.status_code == 200 and len(response.content) == study.copy_bytes


def test_a_bad_autosave_is_refused_as_json_and_saves_nothing(reader_a: Any) -> None:
    study = make_study([reader_a], n=2)
    assignment = study.assignments.get()
    url = reverse("reviews:case", args=[assignment.pk, 1])
    response = login(reader_a).post(
        url, complete_answer(realism="9"), headers={"X-Requested-With": "fetch"}
    )
    assert response.status_code == 400
    reply = response.json()
    assert reply["saved"] is False and set(reply["errors"]) == {"realism"}
    assert not assignment.answers.exists()

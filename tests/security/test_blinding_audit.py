"""Blinding audit: can anything but the pixels tell a reader which cases are synthetic?

The audit crawls a study as its reader would (every case page and every image), collects
the non-visual features of each case (file size, the first header bytes, the response
headers, the URL, the page around it) and trains a shortcut classifier on them with
leave-one-out. Pass: AUC below 0.6. The timing of image responses is compared by class
separately (Mann-Whitney), since noise alone would move a small study's AUC around 0.5.
A planted leak (a few bytes more on every synthetic file) must be caught, so the audit
can fail.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from scipy.stats import mannwhitneyu
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from backend.datasets.models import Origin
from backend.reviews.models import Assignment, Slot
from tests.reviews.conftest import login
from tests.reviews.factories import make_study

pytestmark = pytest.mark.django_db

IMAGE_URL = re.compile(r'<img id="case-image" src="([^"]+)"')
HEADER_BYTES = 48
#: Headers that differ per response whatever the case (dates, the per-request CSRF cookie).
VOLATILE = {"Date", "Set-Cookie", "Vary"}


@dataclass
class Crawled:
    labels: list[int]  # 1 = synthetic
    features: np.ndarray
    seconds: list[float]


def crawl(client: Client, assignment: Assignment, fetches: int = 3) -> Crawled:
    labels, rows, seconds = [], [], []
    header_sets: dict[tuple[Any, ...], int] = {}
    for slot in Slot.objects.filter(assignment=assignment).select_related("case"):
        page = client.get(reverse("reviews:case", args=[assignment.pk, slot.position]))
        assert page.status_code == 200
        html = page.content.decode()
        url = IMAGE_URL.search(html)
        assert url, f"case {slot.position}: no image in the page"
        times = []
        for _ in range(fetches):
            started = time.perf_counter()
            response = client.get(url.group(1))
            body = response.content
            times.append(time.perf_counter() - started)
        headers = tuple(sorted((k, v) for k, v in response.items() if k not in VOLATILE))
        header_id = header_sets.setdefault(headers, len(header_sets))
        head = np.frombuffer(body[:HEADER_BYTES].ljust(HEADER_BYTES, b"\0"), dtype=np.uint8)
        # The page minus what differs per request or position by design: random tokens (the
        # image's, CSRF) and numbers (the case number, links).
        page_rest = re.sub(r"\d+", "", re.sub(r"[A-Za-z0-9_-]{20,}", "T", html))
        rows.append([len(body), header_id, len(url.group(1)), len(page_rest), *head.astype(float)])
        labels.append(int(slot.case.origin == Origin.SYNTHETIC))
        seconds.append(statistics.median(times))
    return Crawled(labels, np.array(rows, dtype=float), seconds)


def shortcut_auc(crawled: Crawled) -> float:
    """Leave-one-out AUC of a logistic regression on the non-visual features."""
    features = crawled.features
    varying = features.std(axis=0) > 0
    if not varying.any():
        return 0.5  # every feature is one value: nothing to learn from
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    scores = cross_val_predict(
        model, features[:, varying], crawled.labels, cv=LeaveOneOut(), method="predict_proba"
    )[:, 1]
    return float(roc_auc_score(crawled.labels, scores))


def test_a_reader_cannot_tell_the_classes_apart_by_anything_but_the_pixels(
    reader_a: Any,
) -> None:
    study = make_study([reader_a], n=20, name="audit")
    assignment = Assignment.objects.get(study=study, reader=reader_a)
    client = login(reader_a)
    crawl(client, assignment, fetches=1)  # warm up (first requests pay for imports and caches)
    crawled = crawl(client, assignment)
    assert sum(crawled.labels) == 20 and len(crawled.labels) == 40
    auc = shortcut_auc(crawled)
    assert auc < 0.6, f"AUC {auc:.3f}; features by class: {crawled.features[:, :4].tolist()}"
    synthetic = [s for s, y in zip(crawled.seconds, crawled.labels, strict=True) if y]
    real = [s for s, y in zip(crawled.seconds, crawled.labels, strict=True) if not y]
    p_value = mannwhitneyu(synthetic, real).pvalue
    assert p_value > 0.001, f"image response times differ by class (p = {p_value:.2g})"


def test_the_audit_catches_a_planted_size_leak(reader_a: Any) -> None:
    study = make_study([reader_a], n=10, name="leaky")
    for case in study.cases.filter(origin=Origin.SYNTHETIC):
        with default_storage.open(case.file, "rb") as handle:
            data = handle.read()
        default_storage.delete(case.file)
        default_storage.save(case.file, _content(data + b"\0" * 16))
    assignment = Assignment.objects.get(study=study, reader=reader_a)
    assert shortcut_auc(crawl(login(reader_a), assignment, fetches=1)) > 0.9


def _content(data: bytes) -> Any:
    from django.core.files.base import ContentFile

    return ContentFile(data)

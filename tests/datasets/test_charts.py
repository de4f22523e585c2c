"""Dataset page charts: FST mix against the balanced target, and the ITA histogram."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from backend.datasets.charts import fst_mix, ita_histogram
from tests.accounts.factories import PASSWORD
from tests.datasets.factories import DatasetFactory, ImageFactory


def test_fst_mix_bars_show_shares_and_targets() -> None:
    chart = fst_mix({"1": 30, "2": 60, "3": 6, "5": 3, "6": 1, "unknown": 50})
    shares = [bar.value for bar in chart["bars"]]
    assert [bar.label for bar in chart["bars"]] == ["I", "II", "III", "IV", "V", "VI"]
    assert shares == pytest.approx([0.3, 0.6, 0.06, 0.0, 0.03, 0.01])  # "unknown" is left out
    tallest = max(chart["bars"], key=lambda b: b.height)
    assert tallest.label == "II" and tallest.y == pytest.approx(0.0)
    assert len({round(m.y1, 6) for m in chart["markers"]}) == 1  # a balanced target: one level


def test_ita_histogram_bins_and_cut_points() -> None:
    chart = ita_histogram([60.0, 62.0, -45.0, 89.9, -90.0, 95.0])
    counts = {bar.label: bar.value for bar in chart["bars"]}
    assert (
        counts["60..70"] == 2
        and counts["-50..-40"] == 1
        and counts["80..90"] == 1
        and counts["-90..-80"] == 1
    )
    assert sum(counts.values()) == 5  # 95 is outside -90..90
    assert [m.label for m in chart["markers"]] == ["I", "II", "III", "IV", "V"]


@pytest.mark.django_db
def test_the_dataset_page_draws_both_charts(lead: Any) -> None:
    dataset = DatasetFactory()
    for fst, ita in ((1, 60.0), (2, 45.0), (6, -40.0)):
        ImageFactory(dataset=dataset, fst=fst, ita=ita)
    dataset.refresh_counts()
    client = Client()
    client.login(username=lead.username, password=PASSWORD)
    page = client.get(dataset.get_absolute_url())
    html = page.content.decode()
    assert 'id="fst-mix"' in html and 'id="ita-histogram"' in html
    assert page.context["n_ita"] == 3
    assert html.count('class="bar"') == 6 + 18

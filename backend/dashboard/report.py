"""A project's go/no-go report: the target rows, the verdict, lineage, plots, reader-study
statistics and failure modes, as one JSON-ready dict that the page, the HTML and PDF exports
and recorded decisions all share.

Charts are plain coordinates for server-side SVG (as ``backend.datasets.charts``), and the
sample grid is inlined as data URIs, so an exported report is one self-contained file.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from django.core.cache import cache
from django.db.models import Min
from django.utils import timezone
from PIL import Image as PILImage

from backend.dashboard.evidence import Sources, collect, find_sources
from backend.dashboard.models import Project
from backend.datasets.charts import ita_histogram
from backend.datasets.models import Image
from backend.runs.downstream_page import auroc_bars
from validation.go_no_go import FailureInputs, failure_modes, judge
from validation.vocabulary import FST

THUMB = 72
CHART_W, ROW_H, PAD = 420.0, 22.0, 90.0
GROUPS = ("I-III", "IV", "V-VI")


def build_report(project: Project) -> dict[str, Any]:
    """Everything the dashboard shows for ``project``, computed now."""
    sources = find_sources(project)
    settings = project.target_settings
    results, decision = judge(settings, collect(sources))
    rows = [r.to_dict() for r in results]
    by_key = {r["key"]: r for r in rows}
    stats = sources.study_stats
    modes = failure_modes(_failure_inputs(sources, by_key))
    return {
        "project": {"id": project.pk, "name": project.name, "description": project.description},
        "generated_at": timezone.now().isoformat(timespec="seconds"),
        "rule": settings.rule,
        "decision": {**decision.to_dict(), "not_comparable": decision.counts["not comparable"]},
        "targets": rows,
        "failure_modes": [m.to_dict() for m in modes],
        "show_failure_modes": decision.verdict == "NO-GO",
        "lineage": lineage(sources),
        "reader_study": _reader_section(sources),
        "charts": {
            "auroc": _auroc_chart(sources),
            "ita": _ita_charts(sources),
            "accuracy": accuracy_chart(stats) if stats else None,
            "realism": realism_chart(stats) if stats else None,
        },
        "sample_grid": sample_grid(sources),
    }


def _failure_inputs(sources: Sources, rows: dict[str, dict[str, Any]]) -> FailureInputs:
    result = sources.evaluation.result if sources.evaluation else {}
    fid = (result.get("fid") or {}).get("overall") or {}
    tone = result.get("tone") or {}
    downstream = sources.downstream_results or {}
    primary = downstream.get("primary")
    stats = sources.study_stats or {}
    memo = result.get("memorization") or {}
    return FailureInputs(
        fid=fid.get("value"),
        fid_label=f"{(result.get('fid') or {}).get('dims')}-d" if fid else "",
        ita_real=(tone.get("ita") or {}).get("real", []),
        ita_synthetic=(tone.get("ita") or {}).get("synthetic", []),
        tone_within_one=(tone.get("overall") or {}).get("within_one_rate"),
        diversity_alarms=((result.get("lpips") or {}).get("diversity") or {}).get("alarms", []),
        auroc_all=((downstream.get("differences") or {}).get(primary) or {}).get("all"),
        auroc_i_iii_failed=rows.get("auroc_i_iii", {}).get("status") == "fail",
        reader_accuracy=(stats.get("pooled") or {}).get("accuracy"),
        memorized=memo.get("n_flagged") if memo.get("n_train") else None,
    )


def lineage(sources: Sources) -> list[dict[str, Any]]:
    """dataset -> model -> synthetic set -> metrics -> study -> downstream, found or missing."""

    def step(stage: str, row: Any, text: str) -> dict[str, Any]:
        if row is None:
            return {"stage": stage, "found": False, "text": text, "url": ""}
        return {"stage": stage, "found": True, "text": text, "url": row.get_absolute_url()}

    real = sources.real[0] if sources.real else None
    train, generate = sources.train, sources.generate
    evaluation, study, downstream = sources.evaluation, sources.study, sources.downstream
    return [
        step(
            "Real dataset",
            real,
            ", ".join(f"{d.name} ({d.image_count} images)" for d in sources.real) or "not recorded",
        ),
        step(
            "Model",
            train,
            f"{train.get_kind_display()} run #{train.pk}" if train else "not recorded",
        ),
        step(
            "Synthetic set",
            sources.synthetic,
            f"{sources.synthetic.name} ({sources.synthetic.image_count} images"
            + (f", generate run #{generate.pk})" if generate else ")"),
        ),
        step("Metrics", evaluation, f"evaluate run #{evaluation.pk}" if evaluation else "pending"),
        step(
            "Reader study",
            study,
            f"study #{study.pk} ({study.n_real} real + {study.n_synthetic} synthetic, "
            f"{study.get_status_display().lower()})"
            if study
            else "pending (no closed study)",
        ),
        step(
            "Downstream",
            downstream,
            f"downstream run #{downstream.pk}" if downstream else "pending",
        ),
    ]


# --- reader study ---------------------------------------------------------------------------


def _p(entry: dict[str, Any] | None) -> dict[str, Any]:
    """A proportion entry as text: value, CI, k/n and p."""
    entry = entry or {}
    value, ci = entry.get("value"), entry.get("ci")
    return {
        "value": value,
        "text": "–" if value is None else f"{value:.0%}",
        "ci_text": "" if not ci or None in ci else f"[{ci[0]:.0%}, {ci[1]:.0%}]",
        "k": entry.get("k"),
        "n": entry.get("n"),
        "p_text": "" if entry.get("p_value") is None else f"{entry['p_value']:.3g}",
    }


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def _stats_rows(stats: dict[str, Any]) -> dict[str, Any]:
    pooled = stats.get("pooled") or {}
    realism = stats.get("realism") or {}
    fooling = stats.get("fooling") or {}
    return {
        "n_readings": stats.get("n_readings", 0),
        "accuracy": _p(pooled.get("accuracy")),
        "sensitivity": _p(pooled.get("sensitivity")),
        "specificity": _p(pooled.get("specificity")),
        "indistinguishable": _p(fooling.get("indistinguishable")),
        "mean_fooling": _num(fooling.get("mean_rate"), "{:.0%}"),
        "realism_real": _num((realism.get("real") or {}).get("mean")),
        "realism_synthetic": _num((realism.get("synthetic") or {}).get("mean")),
        "realism_median_real": _num((realism.get("real") or {}).get("median"), "{:g}"),
        "realism_median_synthetic": _num((realism.get("synthetic") or {}).get("median"), "{:g}"),
        "realism_p": _num((realism.get("mann_whitney") or {}).get("p_value"), "{:.3g}"),
    }


def _reader_section(sources: Sources) -> dict[str, Any] | None:
    stats, study = sources.study_stats, sources.study
    if stats is None or study is None:
        return None
    agreement = stats.get("agreement") or {}
    abcd = stats.get("abcd") or {}
    return {
        "study": {
            "id": study.pk,
            "url": study.get_absolute_url(),
            "simulated": study.simulated_readers,
        },
        "n_readers": stats.get("n_readers"),
        "n_cases": stats.get("n_cases"),
        "pooled": _stats_rows(stats),
        "groups": [
            {"group": g, **_stats_rows((stats.get("per_fst_group") or {}).get(g) or {})}
            for g in GROUPS
        ],
        "readers": [
            {
                "reader": f"Reader {i}",
                "accuracy": _p(entry.get("accuracy")),
                "sensitivity": _p(entry.get("sensitivity")),
                "specificity": _p(entry.get("specificity")),
            }
            for i, (_, entry) in enumerate(sorted((stats.get("per_reader") or {}).items()), 1)
        ],
        "fleiss": agreement.get("fleiss_kappa") or {},
        "cohen": agreement.get("cohen_kappa") or [],
        "abcd": [
            {
                "criterion": name,
                "real": _num(entry.get("real_rate"), "{:.0%}"),
                "synthetic": _num(entry.get("synthetic_rate"), "{:.0%}"),
                "p": _num(entry.get("p_value"), "{:.3g}"),
                "n": f"{entry.get('n_real', 0)} / {entry.get('n_synthetic', 0)}",
            }
            for name, entry in (abcd.get("realistic") or {}).items()
        ],
        "tds": {
            origin: _num(((abcd.get("tds") or {}).get(origin) or {}).get("mean"))
            for origin in ("real", "synthetic")
        },
        "definitions": stats.get("definitions") or {},
    }


def accuracy_chart(stats: dict[str, Any]) -> dict[str, Any] | None:
    """Reader accuracy with Wilson CI whiskers: one row per reader and the pooled row."""
    rows = [
        (f"Reader {i}", entry.get("accuracy") or {})
        for i, (_, entry) in enumerate(sorted((stats.get("per_reader") or {}).items()), 1)
    ]
    rows.append(("Pooled", (stats.get("pooled") or {}).get("accuracy") or {}))
    rows = [(label, e) for label, e in rows if e.get("value") is not None]
    if not rows:
        return None
    span = CHART_W - PAD - 10

    def x_of(value: float) -> float:
        return PAD + value * span

    items = []
    for i, (label, entry) in enumerate(rows):
        y = 10 + i * ROW_H
        ci = entry.get("ci") or [entry["value"], entry["value"]]
        items.append(
            {
                "label": label,
                "y": y + ROW_H / 2,
                "text_y": y + ROW_H / 2 + 4,
                "x": x_of(entry["value"]),
                "ci_x1": x_of(ci[0]),
                "ci_x2": x_of(ci[1]),
                "title": f"{label}: {entry['value']:.0%} [{ci[0]:.0%}, {ci[1]:.0%}], "
                f"n={entry.get('n')}",
            }
        )
    height = 10 + len(rows) * ROW_H + 20
    return {
        "items": items,
        "width": CHART_W,
        "height": height,
        "chance_x": x_of(0.5),
        "axis_y": height - 6,
        "ticks": [{"x": x_of(v), "text": f"{v:.0%}"} for v in (0, 0.25, 0.5, 0.75, 1.0)],
        "plot_bottom": height - 18,
    }


def realism_chart(stats: dict[str, Any]) -> dict[str, Any] | None:
    """Realism 1-7: share of readings per score, real beside synthetic."""
    histogram = (stats.get("realism") or {}).get("histogram") or {}
    real, synthetic = histogram.get("real") or [], histogram.get("synthetic") or []
    if not sum(real) and not sum(synthetic):
        return None
    shares = {
        name: [c / (sum(counts) or 1) for c in counts]
        for name, counts in (("real", real), ("synthetic", synthetic))
    }
    top = max([*shares["real"], *shares["synthetic"], 0.01])
    height, bottom, slot = 160.0, 140.0, (CHART_W - 20) / 7
    bars = []
    for score in range(7):
        for j, (name, colour) in enumerate((("real", "#8a8f98"), ("synthetic", "#1f6fb2"))):
            values = shares[name]
            share = values[score] if score < len(values) else 0.0
            h = share / top * (bottom - 12)
            bars.append(
                {
                    "x": 20 + score * slot + 4 + j * (slot - 8) / 2,
                    "y": bottom - h,
                    "width": (slot - 8) / 2 - 1,
                    "height": h,
                    "colour": colour,
                    "title": f"realism {score + 1}, {name}: {share:.0%}",
                }
            )
    labels = [{"x": 20 + s * slot + slot / 2 - 3, "text": str(s + 1)} for s in range(7)]
    return {"bars": bars, "labels": labels, "width": CHART_W, "height": height, "axis_y": 155}


# --- metrics and downstream charts -------------------------------------------------------------


def _auroc_chart(sources: Sources) -> dict[str, Any] | None:
    results = sources.downstream_results
    if not results or "arms" not in results:
        return None
    return auroc_bars(results)


def _ita_charts(sources: Sources) -> dict[str, Any]:
    if sources.evaluation is None:
        return {}
    ita = ((sources.evaluation.result or {}).get("tone") or {}).get("ita") or {}
    return {name: ita_histogram(ita[name]) for name in ("real", "synthetic") if ita.get(name)}


def sample_grid(sources: Sources) -> dict[str, Any]:
    """One thumbnail per FST x diagnosis cell of the synthetic set, inlined as PNG data URIs."""
    firsts = (
        sources.synthetic.images.exclude(fst__isnull=True)
        .values("fst", "diagnosis")
        .annotate(first=Min("id"))
    )
    images = Image.objects.in_bulk([row["first"] for row in firsts])
    cells = {(image.fst, image.diagnosis): image for image in images.values()}
    diagnoses = sorted({dx for _, dx in cells})
    rows = []
    for fst in FST:
        row = []
        for dx in diagnoses:
            image = cells.get((int(fst), dx))
            row.append(
                []
                if image is None
                else [{"src": _thumbnail(image), "title": f"FST {fst.roman}, {dx}"}]
            )
        if any(row):
            rows.append({"fst": fst.roman, "cells": row})
    return {"diagnoses": diagnoses, "rows": rows}


def _thumbnail(image: Any) -> str:
    """``image`` as a small PNG data URI, "" when its file cannot be read.

    Files are content-addressed (``Image.sha256``), so a thumbnail is cached for good under
    its sha256 in Django's cache and a page view re-encodes nothing it has shown before; a
    failure is not cached, so a file that comes back is shown on the next view.
    """
    key = f"dashboard:thumbnail:{THUMB}:{image.sha256}" if image.sha256 else None
    if key is not None and (cached := cache.get(key)) is not None:
        return cached
    try:
        with PILImage.open(image.fetch()) as picture:
            picture = picture.convert("RGB")
            picture.thumbnail((THUMB, THUMB))
            buffer = io.BytesIO()
            picture.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError):
        return ""
    src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    if key is not None:
        cache.set(key, src, timeout=None)
    return src


def snapshot(report: dict[str, Any]) -> dict[str, Any]:
    """What a recorded decision keeps: the report without its pictures."""
    return {
        key: report[key]
        for key in ("generated_at", "rule", "decision", "targets", "failure_modes", "lineage")
    } | {"reader_study": report.get("reader_study")}

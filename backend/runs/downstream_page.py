"""The results section of a downstream run's page: server-rendered SVG charts and tables.

Built from the run's ``results`` artifact (``validation.downstream`` output), the same way
``backend/datasets/charts.py`` draws dataset charts: plain coordinates for the template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from backend.runs.models import Run

WIDTH, HEIGHT, PAD = 640.0, 200.0, 24.0
SMALL = 150.0  # side of one ROC / reliability panel
ARM_COLOURS = {"baseline": "#8a8f98", "augmented": "#1f6fb2"}
BAR_GROUPS = ("I", "II", "III", "IV", "V", "VI", "I-III", "V-VI", "all")
ROC_GROUPS = ("I-III", "IV", "V-VI", "all", "I", "II", "III", "V", "VI")


@dataclass(frozen=True)
class AurocBar:
    group: str
    arm: str
    colour: str
    x: float
    y: float
    width: float
    height: float
    whisker_x: float
    whisker_top: float | None
    whisker_bottom: float | None
    title: str


def load_results(run: Run) -> dict[str, Any] | None:
    """The run's results JSON, or ``None`` before it has one."""
    artifact = run.artifacts.filter(name="results").first()
    if artifact is None:
        return None
    try:
        return json.loads(artifact.fetch().read_text())
    except (OSError, ValueError):
        return None


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(values: list[float] | None) -> str:
    return "" if not values or None in values else f"[{values[0]:.3f}, {values[1]:.3f}]"


def auroc_bars(results: dict[str, Any]) -> dict[str, Any]:
    """Per-group AUROC bars, baseline beside the primary augmented arm, with CI whiskers."""
    arms = {
        "baseline": results["arms"]["baseline"],
        "augmented": results["arms"][results["primary"]],
    }
    slot = (WIDTH - PAD) / len(BAR_GROUPS)
    bar_width = slot * 0.36
    top, bottom = 10.0, HEIGHT - PAD
    plot = bottom - top

    def y_of(value: float) -> float:
        return bottom - value * plot

    bars, labels = [], []
    for i, group in enumerate(BAR_GROUPS):
        x0 = PAD + i * slot + slot * 0.12
        labels.append({"x": x0 + bar_width, "text": group})
        for j, (role, arm) in enumerate(arms.items()):
            row = arm["groups"].get(group, {})
            value = row.get("auroc")
            if value is None:
                continue
            ci = row.get("auroc_ci") or [None, None]
            bars.append(
                AurocBar(
                    group=group,
                    arm=role,
                    colour=ARM_COLOURS[role],
                    x=x0 + j * bar_width,
                    y=y_of(value),
                    width=bar_width - 1,
                    height=value * plot,
                    whisker_x=x0 + j * bar_width + (bar_width - 1) / 2,
                    whisker_top=None if ci[1] is None else y_of(ci[1]),
                    whisker_bottom=None if ci[0] is None else y_of(ci[0]),
                    title=f"FST {group}, {role}: AUROC {value:.3f} {_ci(ci)} (n={row.get('n')})",
                )
            )
    grid = [{"y": y_of(v), "label": f"{v:.2f}"} for v in (0.25, 0.5, 0.75, 1.0)]
    return {"bars": bars, "labels": labels, "grid": grid, "width": WIDTH, "height": HEIGHT}


def _polyline(xs: list[float], ys: list[float]) -> str:
    return " ".join(
        f"{8 + x * (SMALL - 16):.1f},{SMALL - 8 - y * (SMALL - 16):.1f}"
        for x, y in zip(xs, ys, strict=True)
    )


def roc_panels(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One small ROC panel per FST group: baseline and augmented (seed-averaged scores)."""
    panels = []
    primary = results["primary"]
    for group in ROC_GROUPS:
        curves = []
        for role, name in (("baseline", "baseline"), ("augmented", primary)):
            curve = results["arms"][name]["roc"].get(group)
            if curve and curve["fpr"]:
                auroc = results["arms"][name]["groups"].get(group, {}).get("auroc")
                curves.append(
                    {
                        "role": role,
                        "colour": ARM_COLOURS[role],
                        "points": _polyline(curve["fpr"], curve["tpr"]),
                        "auroc": _fmt(auroc),
                    }
                )
        if curves:
            panels.append({"group": group, "curves": curves, "diagonal": _polyline([0, 1], [0, 1])})
    return panels


def reliability_panels(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Reliability diagrams (observed rate against mean predicted probability per bin)."""
    panels = []
    for role, name in (("baseline", "baseline"), ("augmented", results["primary"])):
        bins = results["arms"][name]["reliability"]
        total = sum(b["count"] for b in bins) or 1
        points = [
            {
                "x": 8 + b["mean_predicted"] * (SMALL - 16),
                "y": SMALL - 8 - b["observed"] * (SMALL - 16),
                "r": 2 + 6 * (b["count"] / total) ** 0.5,
                "title": f"{b['low']:.1f}-{b['high']:.1f}: predicted {b['mean_predicted']:.2f}, "
                f"observed {b['observed']:.2f} (n={b['count']})",
            }
            for b in bins
        ]
        panels.append(
            {
                "arm": name,
                "role": role,
                "colour": ARM_COLOURS[role],
                "line": _polyline(
                    [b["mean_predicted"] for b in bins], [b["observed"] for b in bins]
                ),
                "points": points,
                "diagonal": _polyline([0, 1], [0, 1]),
                "ece": _fmt(results["arms"][name]["groups"]["all"].get("ece")),
            }
        )
    return panels


def arm_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per arm: AUROC [CI] per group, sensitivity, specificity, ECE, fairness gaps."""
    rows = []
    for name, arm in results["arms"].items():
        groups = arm["groups"]
        diff = results["differences"].get(name, {})
        rows.append(
            {
                "arm": name,
                "primary": name == results["primary"],
                "synthetic": f"{arm['train_synthetic']} ({arm['achieved_ratio']:.2f}:1)"
                if arm["uses_synthetic"]
                else "none",
                "auroc": [
                    {
                        "value": _fmt(groups.get(g, {}).get("auroc")),
                        "ci": _ci(groups.get(g, {}).get("auroc_ci")),
                    }
                    for g in ("I-III", "IV", "V-VI", "all")
                ],
                "v_vi_change": _change(diff.get("V-VI")),
                "i_iii_change": _change(diff.get("I-III")),
                "sensitivity": _fmt(groups["all"].get("sensitivity")),
                "specificity": _fmt(groups["all"].get("specificity")),
                "ece": _fmt(groups["all"].get("ece")),
                "eod": _fmt(arm["fairness"].get("equal_opportunity_groups")),
                "eq_odds": _fmt(arm["fairness"].get("equalized_odds_groups")),
            }
        )
    return rows


def _change(diff: dict[str, Any] | None) -> str:
    if not diff or diff.get("relative") is None:
        return "–"
    ci = diff.get("relative_ci") or [None, None]
    ci_text = "" if None in ci else f" [{ci[0]:+.1%}, {ci[1]:+.1%}]"
    return f"{diff['relative']:+.1%}{ci_text}"


def per_fst_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Baseline and primary arm per type and group: n, AUROC [CI], sensitivity, specificity, ECE."""
    rows = []
    for group in BAR_GROUPS:
        for role, name in (("baseline", "baseline"), ("augmented", results["primary"])):
            row = results["arms"][name]["groups"].get(group) or {}
            if not row.get("n"):
                continue
            rows.append(
                {
                    "group": group,
                    "arm": name,
                    "role": role,
                    "n": row["n"],
                    "positives": row.get("positives"),
                    "auroc": _fmt(row.get("auroc")),
                    "ci": _ci(row.get("auroc_ci")),
                    "sensitivity": _fmt(row.get("sensitivity")),
                    "specificity": _fmt(row.get("specificity")),
                    "ece": _fmt(row.get("ece")),
                }
            )
    return rows


def _gate(name: str, gate: dict[str, Any]) -> dict[str, Any]:
    out = {"name": name, **gate}
    if gate.get("available"):
        abs_ = gate.get("absolute_ci") or [None, None]
        out["relative_text"] = _change(gate)
        out["absolute_text"] = f"{gate['absolute']:+.3f}" + (
            "" if None in abs_ else f" [{abs_[0]:+.3f}, {abs_[1]:+.3f}]"
        )
        out["aurocs_text"] = (
            f"baseline {_fmt(gate.get('baseline_auroc'))} → augmented {_fmt(gate.get('augmented_auroc'))}"
        )
    return out


def downstream_report(run: Run) -> dict[str, Any] | None:
    """Everything the results section of a downstream run's page shows."""
    if run.kind != Run.Kind.DOWNSTREAM:
        return None
    results = load_results(run)
    if not results or "arms" not in results:
        return None
    gate = results["go_no_go"]
    return {
        "primary": results["primary"],
        "bars": auroc_bars(results),
        "roc": roc_panels(results),
        "reliability": reliability_panels(results),
        "arms": arm_table(results),
        "per_fst": per_fst_table(results),
        "gates": [
            _gate("FST V-VI AUROC improvement", gate["fst_v_vi_improvement"]),
            _gate("FST I-III AUROC change", gate["fst_i_iii_change"]),
        ],
        "evidence": results.get("evidence", {}),
        "weights": results.get("weights", []),
        "definitions": results.get("definitions", {}),
        "data": results.get("data", {}),
        "small": SMALL,
    }

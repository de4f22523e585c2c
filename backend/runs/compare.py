"""Two runs side by side: which config values differ, and their results and loss curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.runs.models import Run

CURVE_WIDTH, CURVE_HEIGHT = 400.0, 160.0


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"balancing.resample": True, ...}`` for nested dicts; lists stay values."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return flat


@dataclass(frozen=True)
class Row:
    key: str
    a: Any
    b: Any

    @property
    def differs(self) -> bool:
        return self.a != self.b


def diff_rows(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """One row per key present in either side (missing values as ``None``), sorted by key."""
    flat_a, flat_b = flatten(a), flatten(b)
    return [Row(key, flat_a.get(key), flat_b.get(key)) for key in sorted(set(flat_a) | set(flat_b))]


def loss_polylines(runs: list[Run]) -> list[str]:
    """SVG polyline points for each run's loss history, on shared axes."""
    points = [run.loss_history or [] for run in runs]
    every = [p for series in points for p in series]
    if not every:
        return ["" for _ in runs]
    x0, x1 = min(p[0] for p in every), max(p[0] for p in every)
    y0, y1 = min(p[1] for p in every), max(p[1] for p in every)

    def scale(step: float, loss: float) -> str:
        x = 0.0 if x1 == x0 else (step - x0) / (x1 - x0) * CURVE_WIDTH
        y = (
            CURVE_HEIGHT / 2
            if y1 == y0
            else CURVE_HEIGHT - 5 - (loss - y0) / (y1 - y0) * (CURVE_HEIGHT - 10)
        )
        return f"{x:.1f},{y:.1f}"

    return [" ".join(scale(step, loss) for step, loss in series) for series in points]


def summary(run: Run) -> dict[str, Any]:
    duration = (
        (run.finished_at - run.started_at).total_seconds()
        if run.finished_at and run.started_at
        else None
    )
    return {
        "kind": run.kind,
        "status": run.status,
        "steps": f"{run.step}/{run.total_steps}",
        "final loss": run.loss_history[-1][1] if run.loss_history else None,
        "duration (s)": round(duration, 1) if duration is not None else None,
        "attempts": run.attempts,
        "device": run.device,
        "GPU-seconds": round(run.gpu_seconds, 1),
        "cost": round(run.gpu_cost, 2),
        "datasets": ", ".join(d.name for d in run.datasets.all()),
        "parents": ", ".join(f"#{p.pk}" for p in run.parents.all()),
    }

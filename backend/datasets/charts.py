"""Small server-rendered SVG charts for dataset pages: FST mix against a target, ITA histogram."""

from __future__ import annotations

from dataclasses import dataclass

from validation.skin import DEFAULT_THRESHOLDS
from validation.vocabulary import FST

WIDTH, HEIGHT, PAD = 420.0, 160.0, 18.0


@dataclass(frozen=True)
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    value: float
    text: str


@dataclass(frozen=True)
class Marker:
    label: str
    x1: float
    y1: float
    x2: float
    y2: float


def fst_mix(counts: dict[str, int], target: dict[int, float] | None = None) -> dict[str, list]:
    """Bars of each FST's share of the labelled images, with the target share as a marker.

    ``counts`` is ``Dataset.counts["fst"]`` (keys "1".."6", ranges and "unknown" are left
    out); the default target is a balanced set (1/6 each).
    """
    target = target or {int(f): 1 / 6 for f in FST}
    known = {int(f): counts.get(str(int(f)), 0) for f in FST}
    total = sum(known.values()) or 1
    top = max([*(n / total for n in known.values()), *target.values(), 0.01])
    slot = (WIDTH - PAD) / 6
    bars, markers = [], []
    for i, fst in enumerate(FST):
        share = known[int(fst)] / total
        height = share / top * (HEIGHT - PAD)
        x = PAD + i * slot + slot * 0.15
        bars.append(
            Bar(
                fst.roman,
                x,
                HEIGHT - PAD - height,
                slot * 0.7,
                height,
                share,
                f"{share:.1%} ({known[int(fst)]})",
            )
        )
        y = HEIGHT - PAD - target.get(int(fst), 0) / top * (HEIGHT - PAD)
        markers.append(
            Marker(f"target {target.get(int(fst), 0):.1%}", x - 3, y, x + slot * 0.7 + 3, y)
        )
    return {"bars": bars, "markers": markers}


def ita_histogram(values: list[float], bin_width: float = 10.0) -> dict[str, list]:
    """Bars of ITA counts in ``bin_width``-degree bins over -90..90, with the FST cut points."""
    edges = [-90.0 + i * bin_width for i in range(int(180 / bin_width) + 1)]
    counts = [0] * (len(edges) - 1)
    for value in values:
        if not -90.0 <= value <= 90.0:
            continue  # outside the ITA range of skin colours (b* < 0)
        counts[min(int((value + 90.0) // bin_width), len(counts) - 1)] += 1
    top = max(counts, default=0) or 1
    span = WIDTH - PAD

    def x_of(ita: float) -> float:
        return PAD + (ita + 90.0) / 180.0 * span

    bars = [
        Bar(f"{edges[i]:.0f}..{edges[i + 1]:.0f}", x_of(edges[i]) + 0.5, HEIGHT - PAD - n / top * (HEIGHT - PAD),
            span / len(counts) - 1, n / top * (HEIGHT - PAD), n, f"ITA {edges[i]:.0f}° to {edges[i + 1]:.0f}°: {n}")
        for i, n in enumerate(counts)
    ]  # fmt: skip
    markers = [
        Marker(fst.roman, x_of(bound), 0.0, x_of(bound), HEIGHT - PAD)
        for fst, bound in DEFAULT_THRESHOLDS.lower_bounds()
    ]
    return {"bars": bars, "markers": markers}

"""The results section of an ``evaluate`` run's page: tables, per-FST bars, ITA histograms,
flagged memorization pairs. Charts are drawn server-side like ``backend.datasets.charts``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from backend.datasets.charts import HEIGHT, PAD, WIDTH, Bar, ita_histogram
from backend.runs.models import Run
from validation.vocabulary import FST

FSTS = [str(int(f)) for f in FST]


def _roman(key: str) -> str:
    return FST(int(key)).roman if key.isdigit() and 1 <= int(key) <= 6 else key


def fst_bars(values: dict[str, float | None], fmt: str = "{:.3g}") -> dict[str, Any]:
    """One bar per FST I-VI (missing values leave a gap labelled "n/a")."""
    known = [v for v in values.values() if v is not None]
    top = max([abs(v) for v in known] + [1e-12])
    slot = (WIDTH - PAD) / 6
    bars = []
    for i, key in enumerate(FSTS):
        value = values.get(key)
        height = 0.0 if value is None else max(0.0, value) / top * (HEIGHT - PAD)
        text = "n/a" if value is None else fmt.format(value)
        bars.append(
            Bar(
                _roman(key),
                PAD + i * slot + slot * 0.15,
                HEIGHT - PAD - height,
                slot * 0.7,
                height,
                value or 0.0,
                text,
            )
        )
    return {"bars": bars}


def dig(entry: dict[str, Any] | None, *path: str) -> Any:
    """``entry[path[0]][path[1]]...``, or None where a level is missing or not a dict."""
    for key in path:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry


def _group_counts(result: dict[str, Any], grouping: str, key: str) -> dict[str, Any]:
    """Images behind a group's figures (``grouping``: ``per_fst`` or ``per_diagnosis``), from
    FID's entry, else KID's (either metric may have been left out)."""
    return {
        count: dig(result, "fid", grouping, key, count) or dig(result, "kid", grouping, key, count)
        for count in ("n_real", "n_synthetic")
    }


def evaluation_context(run: Run) -> dict[str, Any] | None:
    """Everything the template needs, or None when the run has no results yet."""
    result = run.result or {}
    if run.kind != Run.Kind.EVALUATE or "summary" not in result:
        return None
    rows = []
    for key in FSTS:
        rows.append(
            {
                "fst": _roman(key),
                **_group_counts(result, "per_fst", key),
                "fid": dig(result, "fid", "per_fst", key, "value"),
                "kid": dig(result, "kid", "per_fst", key, "mean"),
                "is": dig(result, "is", "per_fst", key, "mean"),
                "lpips": dig(result, "lpips", "fidelity", "per_fst", key, "mean"),
                "tone_exact": dig(result, "tone", "per_fst", key, "exact_rate"),
                "tone_within_one": dig(result, "tone", "per_fst", key, "within_one_rate"),
                "tone_n": dig(result, "tone", "per_fst", key, "n"),
            }
        )
    diagnoses = sorted(
        set(dig(result, "fid", "per_diagnosis") or {})
        | set(dig(result, "kid", "per_diagnosis") or {})
    )
    dx_rows = [
        {
            "diagnosis": dx,
            **_group_counts(result, "per_diagnosis", dx),
            "fid": dig(result, "fid", "per_diagnosis", dx, "value"),
            "kid": dig(result, "kid", "per_diagnosis", dx, "mean"),
            "lpips": dig(result, "lpips", "fidelity", "per_diagnosis", dx, "mean"),
        }
        for dx in diagnoses
    ]
    charts = {}
    for name, column, fmt in (
        ("fid", "fid", "{:.3g}"),
        ("kid", "kid", "{:.2g}"),
        ("lpips", "lpips", "{:.3f}"),
        ("tone", "tone_within_one", "{:.0%}"),
    ):
        if any(row[column] is not None for row in rows):
            charts[name] = fst_bars(
                {key: row[column] for key, row in zip(FSTS, rows, strict=True)}, fmt
            )
    ita = dig(result, "tone", "ita") or {}
    histograms = {
        name: ita_histogram(ita.get(name, [])) for name in ("real", "synthetic") if ita.get(name)
    }
    return {
        "result": result,
        "summary": result["summary"],
        "per_fst": rows,
        "per_diagnosis": dx_rows,
        "charts": charts,
        "histograms": histograms,
        "diversity": dig(result, "lpips", "diversity"),
        "memorization": result.get("memorization"),
        "pairs": _pair_images(run, result),
        "weights": result.get("weights", {}),
        "definitions": {
            name: dig(result, *path)
            for name, path in (
                ("FID", ("fid", "definition")),
                ("KID", ("kid", "definition")),
                ("IS", ("is", "definition")),
                ("LPIPS fidelity", ("lpips", "fidelity", "definition")),
                ("LPIPS diversity", ("lpips", "diversity", "definition")),
                ("Tone fidelity", ("tone", "definition")),
                ("Memorization", ("memorization", "definition")),
            )
            if dig(result, *path)
        },
    }


def _pair_images(run: Run, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flagged pairs with their side-by-side PNG inlined (they are a few KB each)."""
    folder = Path(run.workdir) / "memorization-pairs"
    pairs = []
    for entry in dig(result, "memorization", "flagged") or []:
        src = ""
        if entry.get("image"):
            path = folder / Path(entry["image"]).name
            if path.is_file():
                src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        pairs.append({**entry, "src": src})
    return pairs


def latest_evaluation() -> Run | None:
    """The newest succeeded evaluate run (for the dashboard)."""
    return (
        Run.objects.filter(kind=Run.Kind.EVALUATE, status=Run.Status.SUCCEEDED)
        .order_by("-created_at")
        .first()
    )


def demo_evaluation_config(demo_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The demo's evaluate config, and notes to print about the weights it will use.

    Official weight files in the torch hub cache are used as they are. Where one is missing
    (always, offline), random stand-ins are staged under ``demo_dir/torch-standin`` (never in
    the user's own cache) and the run reads them from there: every metric is computed, and
    every figure is labelled "non-official weights". The stand-in demo uses 64-d features: at
    2048-d each FID (overall, per FST, per diagnosis) is a 2048 x 2048 matrix square root,
    15-30 s apiece on two CPU cores.
    """
    from validation.metrics.weights import (
        FID_INCEPTION,
        LPIPS_ALEX,
        MissingWeightsError,
        locate,
        stage_standin,
    )

    notes = []
    unusable = []
    for spec in (FID_INCEPTION, LPIPS_ALEX):
        try:
            found = locate(spec)
        except MissingWeightsError:
            unusable.append(f"{spec.filename} is not in the torch hub cache")
            continue
        notes.append(f"{spec.filename}: {found.to_dict()['label']} ({found.path})")
        if found.status == "non-official":
            unusable.append(f"{spec.filename} in the torch hub cache is not the official file")
    if not unusable:
        return {"fid_dims": 2048}, notes
    home = Path(demo_dir) / "torch-standin"
    for spec in (FID_INCEPTION, LPIPS_ALEX):
        stage_standin(spec, home)
    notes.append(
        f"{'; '.join(unusable)}: using random STAND-IN weights staged under {home}. Every figure "
        "is labelled non-official and none can meet a literature target; put the official files "
        "in $TORCH_HOME/hub/checkpoints/ for real values."
    )
    return {"fid_dims": 64, "kid_subsets": 20, "torch_home": str(home)}, notes

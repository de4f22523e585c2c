"""The headline rows of an evaluation and the side-by-side pictures of flagged pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from validation.files import atomic_path


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline figure: name, value, n, target, met, weights label."""
    rows: list[dict[str, Any]] = []
    weights = result.get("weights", {})

    def label(name: str | None) -> str:
        return weights[name]["label"] if name and name in weights else "no learned weights (ITA)"

    if "fid" in result:
        o = result["fid"]["overall"]
        rows.append(
            {
                "metric": f"FID ({result['fid']['dims']}-d)",
                "value": o.get("value"),
                "n": f"{o['n_real']} real / {o['n_synthetic']} synthetic",
                "target": result["fid"]["target"],
                "weights": label("fid"),
                "warning": o.get("warning", ""),
            }
        )
    if "kid" in result:
        o = result["kid"]["overall"]
        rows.append(
            {
                "metric": "KID",
                "value": o.get("mean"),
                "std": o.get("std"),
                "n": f"{o['n_real']} real / {o['n_synthetic']} synthetic",
                "target": None,
                "weights": label("fid"),
                "warning": "",
            }
        )
    if "is" in result:
        o = result["is"]["synthetic"]
        rows.append(
            {
                "metric": "Inception Score",
                "value": o.get("mean"),
                "std": o.get("std"),
                "n": f"{o['n']} synthetic",
                "target": result["is"]["target"],
                "weights": label("fid"),
                "warning": "",
            }
        )
    if "lpips" in result:
        o = result["lpips"]["fidelity"]["overall"]
        rows.append(
            {
                "metric": "LPIPS to nearest real",
                "value": o.get("mean"),
                "n": f"{o['n']} synthetic",
                "target": result["lpips"]["fidelity"]["target"],
                "weights": label("lpips"),
                "warning": "",
            }
        )
        d = result["lpips"]["diversity"]
        rows.append(
            {
                "metric": "LPIPS diversity (synthetic / real)",
                "value": d["overall"]["synthetic"],
                "reference": d["overall"]["real"],
                "n": f"{d['overall']['n_synthetic']} synthetic",
                "target": None,
                "weights": label("lpips"),
                "warning": "; ".join(d["alarms"]),
            }
        )
    if "tone" in result:
        o = result["tone"]["overall"]
        rows.append(
            {
                "metric": "Tone fidelity (within one type)",
                "value": o.get("within_one_rate"),
                "exact": o.get("exact_rate"),
                "n": f"{o['n']} synthetic",
                "target": result["tone"]["target"],
                "weights": label(None),
                "warning": "",
            }
        )
    if "memorization" in result:
        m = result["memorization"]
        rows.append(
            {
                "metric": "Memorization: flagged pairs",
                "value": m["n_flagged"],
                "n": f"{m['n_synthetic']} synthetic vs {m['n_train']} training",
                "target": None,
                "weights": label("lpips"),
                "warning": "",
            }
        )
    return rows


def write_pair_images(result: dict[str, Any], folder: str | Path, limit: int = 50) -> list[Path]:
    """Side-by-side PNGs (synthetic | training) of the flagged memorization pairs."""
    paths = []
    for entry in result.get("memorization", {}).get("flagged", [])[:limit]:
        with Image.open(entry["synthetic_path"]) as a, Image.open(entry["train_path"]) as b:
            left, right = a.convert("RGB"), b.convert("RGB")
            right = right.resize(left.size) if right.size != left.size else right
            canvas = Image.new("RGB", (left.width * 2 + 4, left.height), (255, 255, 255))
            canvas.paste(left, (0, 0))
            canvas.paste(right, (left.width + 4, 0))
        target = Path(folder) / f"pair-{entry['synthetic']:05d}-{entry['train']:05d}.png"
        with atomic_path(target) as tmp:
            canvas.save(tmp, format="PNG")
        entry["image"] = target.name
        paths.append(target)
    return paths

"""The demo's downstream step: baseline vs augmented classifiers on a locked phantom test set.

The external test set is a second phantom set drawn with another seed and a balanced FST
mix, imported as a locked external test set. The outcome is printed as it is, whatever it
is, with the note that phantom results are no literature evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.datasets.models import Dataset
from backend.runs.models import Run

EXTERNAL_DATASET = "phantom-external-test"

#: Per demo profile: the external phantom set and the experiment. The training phantom uses
#: seed 0 and the skewed default mix; the test set another seed and a balanced mix.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "phantom": {
            "count": 600,
            "image_size": 32,
            "seed": 1,
            "fst_mix": dict.fromkeys(range(1, 7), 1.0),
        },
        # 240 synthetic images beside about 1,100 real training images: the pool caps the
        # ratio near 0.2, so the sweep stays below it.
        "config": {
            "classifier": {"image_size": 32, "epochs": 5, "batch_size": 64},
            "strategies": ["baseline", "traditional_aug", "mixed", "pretrain_finetune", "weighted"],
            "ratios": [0.1, 0.2],
            "main_ratio": 0.2,
            "pretrain_epochs": 2,
            "seeds": [0, 1, 2],
            "bootstrap": 1000,
        },
    },
    "quick": {
        "phantom": {
            "count": 60,
            "image_size": 32,
            "seed": 1,
            "fst_mix": dict.fromkeys(range(1, 7), 1.0),
        },
        "config": {
            "classifier": {"image_size": 16, "epochs": 2, "batch_size": 32, "width": 8},
            "strategies": ["baseline", "mixed"],
            "ratios": [0.3],
            "main_ratio": 0.3,
            "seeds": [0, 1, 2],
            "bootstrap": 200,
        },
    },
}


def import_external(command: Any, folder: Path) -> Dataset:
    """Import the external phantom folder as a locked external test set (reused when unchanged)."""
    dataset, imported = command.import_phantom(
        EXTERNAL_DATASET, folder, role=Dataset.Role.EXTERNAL_TEST
    )
    if imported:
        counts = ", ".join(f"{k}: {v}" for k, v in dataset.counts["fst"].items())
        command.stdout.write(
            f"  {dataset.image_count} images locked as an external test set; per FST {counts}"
        )
    return dataset


def run_downstream_demo(
    command: Any,
    profile: str,
    dataset: Dataset,
    generate: Run,
    demo_dir: Path,
    *,
    fresh: bool,
    base_url: str = "",
) -> Run:
    """Build and lock the external set, run the downstream experiment, print the outcome."""
    settings = PROFILES[profile]
    folder = command._build_phantom(demo_dir / "phantom-external", settings["phantom"])
    external = import_external(command, folder)
    run = command._reuse_or_launch(
        Run.Kind.DOWNSTREAM,
        config=settings["config"],
        datasets=[dataset, external],
        parents=[generate],
        fresh=fresh,
    )
    command.stdout.write(f"  run #{run.pk}: {base_url}{run.get_absolute_url()}")
    run = command._wait_for_run(run)
    for line in outcome_lines(run.result):
        command.stdout.write(f"  {line}")
    return run


def outcome_lines(result: dict[str, Any]) -> list[str]:
    """The honest summary: AUROC per group for both arms, the two go/no-go inputs, the caveat."""
    lines = []
    primary = result.get("primary", "")
    for arm in ("baseline", primary):
        row = result.get("auroc", {}).get(arm, {})
        cells = []
        for group in ("I-III", "IV", "V-VI", "all"):
            value = row.get(group)
            cells.append(
                f"{group} –"
                if not value
                else f"{group} {value[0]:.3f}"
                + (f" [{value[1]:.3f}, {value[2]:.3f}]" if len(value) == 3 else "")
            )
        lines.append(f"AUROC {arm}: " + "; ".join(cells))
    gate = result.get("go_no_go", {})
    for key, label in (
        ("fst_v_vi_improvement", "FST V-VI improvement"),
        ("fst_i_iii_change", "FST I-III change"),
    ):
        entry = gate.get(key, {})
        if not entry.get("available"):
            lines.append(f"{label}: not available ({entry.get('reason', 'no result')})")
            continue
        low, high = entry["relative_ci"]
        verdict = "met" if entry["met"] else "not met"
        sure = " (whole CI)" if entry["met_with_confidence"] else ""
        lines.append(
            f"{label}: {entry['relative']:+.1%} relative [{low:+.1%}, {high:+.1%}], "
            f"target {entry['target']}: {verdict}{sure}"
        )
    reasons = result.get("evidence", {}).get("reasons", [])
    if reasons:
        lines.append("not literature evidence: " + "; ".join(reasons))
    return lines

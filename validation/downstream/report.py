"""The two go/no-go inputs of the seed's critical test (its section 4.3), each with a definition.

1. FST V-VI AUROC improvement of the augmented classifier over the baseline: target a
   relative gain of at least 10 %.
2. FST I-III AUROC change: target a relative drop of less than 2 %.

Each input reports the point estimate (relative and absolute), its paired-bootstrap CI, and
two verdicts: ``met`` (the point estimate meets the target) and ``met_with_confidence`` (the
whole CI does). Neither verdict is a literature result unless the classifier started from
official weights and the test set is real data; the caller records that (``evidence``).
"""

from __future__ import annotations

from typing import Any

V_VI_MIN_RELATIVE_GAIN = 0.10
I_III_MAX_RELATIVE_DROP = 0.02


def go_no_go(differences: dict[str, Any], *, confidence: float = 0.95) -> dict[str, Any]:
    """The go/no-go inputs from the primary arm's per-group paired differences."""
    level = f"{confidence:.0%}"
    dark = differences.get("V-VI")
    light = differences.get("I-III")
    return {
        "fst_v_vi_improvement": {
            "definition": (
                "Relative FST V-VI AUROC improvement = (AUROC_augmented(V-VI) - "
                "AUROC_baseline(V-VI)) / AUROC_baseline(V-VI), AUROCs averaged over seeds on "
                f"the locked external test set; {level} CI by paired bootstrap over test "
                "images and seeds. Absolute = the numerator. Target: relative >= +10%."
            ),
            "target": f">= +{V_VI_MIN_RELATIVE_GAIN:.0%} relative",
            **_verdict(dark, lambda v: v >= V_VI_MIN_RELATIVE_GAIN),
        },
        "fst_i_iii_change": {
            "definition": (
                "Relative FST I-III AUROC change = (AUROC_augmented(I-III) - "
                "AUROC_baseline(I-III)) / AUROC_baseline(I-III), same estimator and CI. "
                "Target: a drop of less than 2%, i.e. relative > -2%."
            ),
            "target": f"> -{I_III_MAX_RELATIVE_DROP:.0%} relative",
            **_verdict(light, lambda v: v > -I_III_MAX_RELATIVE_DROP),
        },
    }


def _verdict(diff: dict[str, Any] | None, meets: Any) -> dict[str, Any]:
    if diff is None:
        return {
            "available": False,
            "reason": "the group has no positive or no negative test image",
            "met": None,
            "met_with_confidence": None,
        }
    bound = diff["relative_ci"][0]  # both targets are lower bounds
    return {
        "available": True,
        "relative": diff["relative"],
        "relative_ci": diff["relative_ci"],
        "absolute": diff["absolute"],
        "absolute_ci": diff["absolute_ci"],
        "baseline_auroc": diff["baseline"],
        "augmented_auroc": diff["augmented"],
        "met": bool(meets(diff["relative"])),
        "met_with_confidence": bool(meets(bound)),
    }


MIN_SEEDS = 3


def evidence(weights: list[str], test_format: str, seeds: int = MIN_SEEDS) -> dict[str, Any]:
    """Whether these results may count toward a literature target, and why not."""
    reasons = []
    if seeds < MIN_SEEDS:
        reasons.append(f"{seeds} training seed(s), fewer than the protocol's {MIN_SEEDS}")
    if "stand-in" in weights:
        reasons.append("classifier weights are stand-ins, not the official ImageNet files")
    if test_format in ("phantom", "generated"):
        reasons.append(f"the test set is {test_format} data, not real patients")
    return {"counts_toward_literature_target": not reasons, "reasons": reasons}


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """A compact summary for the run row: per arm and group AUROC [CI], and the go/no-go."""
    table = {}
    for name, arm in results["arms"].items():
        table[name] = {
            group: (
                None
                if arm["groups"][group].get("auroc") is None
                else [
                    round(arm["groups"][group]["auroc"], 4),
                    *[round(v, 4) for v in (arm["groups"][group].get("auroc_ci") or [])],
                ]
            )
            for group in ("I-III", "IV", "V-VI", "all")
        }
    return {
        "auroc": table,
        "primary": results["primary"],
        "go_no_go": results["go_no_go"],
        "weights": results["weights"],
    }

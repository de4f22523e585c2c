"""validation.go_no_go: the four target states, the verdict and the failure modes."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.weightstats import DescrStatsW

from validation.go_no_go import (
    DEFAULT_TARGETS,
    Evidence,
    FailureInputs,
    TargetSettings,
    assess,
    decide,
    failure_modes,
    judge,
    mean_ci,
)

SPECS = {spec.key: spec for spec in DEFAULT_TARGETS}


def test_the_seed_targets_are_the_defaults() -> None:
    assert {k: (s.op, s.threshold) for k, s in SPECS.items()} == {
        "fid": ("<", 20.0),
        "lpips": ("<", 0.1),
        "is": (">", 5.0),
        "realism": (">", 5.0),
        "indistinguishable": (">", 0.6),
        "tone_fidelity": (">", 0.9),
        "auroc_v_vi": (">=", 0.10),
        "auroc_i_iii": (">", -0.02),
        "set_size": (">=", 60000),
        "memorized": ("<=", 0),
    }
    assert all(spec.definition for spec in DEFAULT_TARGETS)


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("fid", 19.9, "pass"),
        ("fid", 20.0, "fail"),
        ("is", 5.01, "pass"),
        ("auroc_v_vi", 0.10, "pass"),
        ("auroc_v_vi", 0.099, "fail"),
        ("auroc_i_iii", -0.019, "pass"),
        ("auroc_i_iii", -0.02, "fail"),
        ("memorized", 0, "pass"),
        ("memorized", 1, "fail"),
    ],
)
def test_point_rule(key: str, value: float, status: str) -> None:
    result = assess(SPECS[key], Evidence(key, value, n=10**6))
    assert result.status == status


def test_pending_and_not_comparable() -> None:
    assert assess(SPECS["fid"], None).status == "pending"
    pending = assess(SPECS["fid"], Evidence("fid", None, pending="no evaluate run yet"))
    assert (pending.status, pending.reason) == ("pending", "no evaluate run yet")
    stand_in = assess(SPECS["fid"], Evidence("fid", 3.0, n=5000, caveats=("NON-OFFICIAL",)))
    assert stand_in.status == "not comparable" and "NON-OFFICIAL" in stand_in.reason
    small = assess(SPECS["fid"], Evidence("fid", 3.0, n=2047))
    assert small.status == "not comparable" and "2048" in small.reason
    assert assess(SPECS["fid"], Evidence("fid", 3.0, n=2048)).status == "pass"


def test_ci_rule() -> None:
    spec = SPECS["auroc_v_vi"]
    assert assess(spec, Evidence("auroc_v_vi", 0.15, ci=(0.11, 0.2)), "ci").status == "pass"
    straddle = assess(spec, Evidence("auroc_v_vi", 0.15, ci=(0.05, 0.2)), "ci")
    assert straddle.status == "pending" and "straddles" in straddle.reason
    assert assess(spec, Evidence("auroc_v_vi", 0.05, ci=(0.01, 0.12)), "ci").status == "fail"
    # without a CI the point estimate decides
    assert assess(spec, Evidence("auroc_v_vi", 0.15), "ci").status == "pass"


def test_decide() -> None:
    passing = [assess(SPECS["fid"], Evidence("fid", 1.0, n=5000))]
    assert decide(passing).verdict == "GO"
    pending = [*passing, assess(SPECS["is"], None)]
    assert decide(pending).verdict == "INCOMPLETE"
    failing = [*pending, assess(SPECS["memorized"], Evidence("memorized", 3, n=10))]
    decision = decide(failing)
    assert decision.verdict == "NO-GO"
    assert decision.reasons == ("Memorized images: 3 misses <= 0",)
    assert decision.counts == {"pass": 1, "fail": 1, "pending": 1, "not comparable": 0}
    assert decide([]).verdict == "INCOMPLETE"


def test_settings_override_and_validate() -> None:
    settings = TargetSettings(thresholds={"fid": 30}, disabled=frozenset({"is"}), min_n={"fid": 10})
    specs = {s.key: s for s in settings.specs()}
    assert specs["fid"].threshold == 30 and specs["fid"].min_n == 10 and "is" not in specs
    assert TargetSettings.from_dict(settings.to_dict()) == settings
    results, decision = judge(settings, [Evidence("fid", 25.0, n=10)])
    assert {r.spec.key: r.status for r in results}["fid"] == "pass"
    assert decision.verdict == "INCOMPLETE"
    for bad, message in (
        ({"thresholds": {"fidd": 1}}, "thresholds: unknown target 'fidd'"),
        ({"thresholds": {"fid": float("inf")}}, "not finite"),
        ({"thresholds": {"fid": "20"}}, "is not a number"),
        ({"min_n": {"fid": -1}}, "whole number"),
        ({"disabled": ["nope"]}, "disabled: unknown target"),
        ({"rule": "vibes"}, "rule: 'vibes'"),
        ({"colour": 1}, "unknown setting"),
    ):
        with pytest.raises(ValueError, match=message):
            TargetSettings.from_dict(bad)
    with pytest.raises(ValueError, match="key: unknown target"):
        Evidence("nope", 1.0)
    with pytest.raises(ValueError, match="value: nan"):
        Evidence("fid", float("nan"))


def test_failure_modes_trigger_on_their_evidence_only() -> None:
    quiet = {m.name: m for m in failure_modes(FailureInputs(fid=12.0))}
    assert not any(m.triggered for m in quiet.values())
    rng = np.random.default_rng(0)
    same = rng.normal(20, 10, 300)
    calm = failure_modes(FailureInputs(ita_real=same[:150], ita_synthetic=same[150:]))
    assert not calm[1].triggered
    shifted = failure_modes(
        FailureInputs(
            fid=31.0,
            ita_real=rng.normal(40, 8, 150),
            ita_synthetic=rng.normal(0, 8, 150),
            auroc_all={"relative": -0.05, "relative_ci": [-0.09, -0.01]},
            reader_accuracy={"value": 0.8, "p_value": 1e-6},
            memorized=2,
        )
    )
    assert [m.triggered for m in shifted] == [True, True, True]
    assert len(shifted[2].evidence) == 3
    not_significant = failure_modes(
        FailureInputs(auroc_all={"relative": -0.05, "relative_ci": [-0.09, 0.01]})
    )
    assert not not_significant[2].triggered


def test_mean_ci_matches_statsmodels() -> None:
    values = [6, 5, 7, 4, 6, 6, 5, 3, 7, 6]
    low, high = mean_ci(values, 0.95)
    expected = DescrStatsW(np.array(values, dtype=float)).tconfint_mean(alpha=0.05)
    assert low == pytest.approx(expected[0]) and high == pytest.approx(expected[1])
    assert mean_ci([5]) is None
    assert mean_ci([5, 5, 5]) == (5.0, 5.0)
    with pytest.raises(ValueError, match="confidence"):
        mean_ci(values, 1.5)

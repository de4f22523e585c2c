"""Reader-study statistics against scipy, statsmodels and scikit-learn, by hand, and on
simulated readers of known skill."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest, chi2_contingency, mannwhitneyu, norm
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from validation.reader_stats import Reading, simulate_readings, study_statistics


def as_json(stats: dict[str, Any]) -> dict[str, Any]:
    """The statistics through strict JSON (fails on NaN, infinities and non-JSON types)."""
    return json.loads(json.dumps(stats, allow_nan=False))


# --- A small study, written out in full ------------------------------------------------------

#: case -> (origin, fst)
CASES: dict[str, tuple[str, int | None]] = {
    "r1": ("real", 1),
    "r2": ("real", 4),
    "r3": ("real", 5),
    "r4": ("real", None),
    "s1": ("synthetic", 2),
    "s2": ("synthetic", 4),
    "s3": ("synthetic", 6),
    "s4": ("synthetic", None),
}
ORDER = list(CASES)
CALL = {"R": "real", "S": "synthetic", "-": None}
#: Each reader's judgement of the cases in ORDER ("-": not answered).
JUDGEMENTS = {"ann": "RRSRSRRS", "bob": "RSRRSSR-", "cyd": "SRRRRRRS"}
#: Realism 1-7 in ORDER ("-": not answered).
REALISM = {"ann": "65747352", "bob": "5674-643", "cyd": "7765533-"}
#: "Realistic?" for the border in ORDER (Y/N/-); asymmetry is always realistic.
BORDER = {"ann": "YYNYNYN-", "bob": "YYYYNNY-", "cyd": "YNYY-YNN"}
#: Stolz scores (A, B, C, D) of some readings; bob's s1 lacks two, so it has no TDS.
SCORES: dict[tuple[str, str], tuple[int | None, ...]] = {
    ("ann", "r1"): (0, 2, 3, 2),
    ("ann", "s1"): (2, 8, 6, 5),
    ("bob", "r1"): (1, 4, 4, 3),
    ("bob", "s1"): (1, 3, None, None),
    ("cyd", "r2"): (1, 1, 2, 2),
    ("cyd", "s2"): (2, 0, 1, 1),
}
YES_NO = {"Y": True, "N": False, "-": None}


def small_study() -> list[Reading]:
    readings = []
    for reader in JUDGEMENTS:
        for i, case in enumerate(ORDER):
            origin, fst = CASES[case]
            a, b, c, d = SCORES.get((reader, case), (None,) * 4)
            readings.append(
                Reading(
                    reader=reader,
                    case=case,
                    origin=origin,
                    fst=fst,
                    judgement=CALL[JUDGEMENTS[reader][i]],
                    realism=None if REALISM[reader][i] == "-" else int(REALISM[reader][i]),
                    realistic={"asymmetry": True, "border": YES_NO[BORDER[reader][i]]},
                    scores={"asymmetry": a, "border": b, "colours": c, "structures": d},
                )
            )
    return readings


def test_one_reader_by_hand_and_against_scipy_and_statsmodels() -> None:
    """7 of 10 right: 4 of 5 synthetic called synthetic, 3 of 5 real called real."""
    calls = {"synthetic": "SSSSR", "real": "RRRSS"}
    readings = [
        Reading("solo", f"{origin}-{i}", origin, 3, CALL[call])
        for origin, row in calls.items()
        for i, call in enumerate(row)
    ]
    pooled = study_statistics(readings)["pooled"]
    accuracy = pooled["accuracy"]
    assert (accuracy["k"], accuracy["n"], accuracy["value"]) == (7, 10, 0.7)
    assert (pooled["sensitivity"]["k"], pooled["sensitivity"]["n"]) == (4, 5)
    assert pooled["sensitivity"]["value"] == pytest.approx(0.8)
    assert (pooled["specificity"]["k"], pooled["specificity"]["n"]) == (3, 5)
    assert pooled["specificity"]["value"] == pytest.approx(0.6)
    # Two-sided exact test by hand: 2 * P(X >= 7) for X ~ Bin(10, 1/2) = 2 * 176 / 1024.
    assert accuracy["p_value"] == pytest.approx(2 * (120 + 45 + 10 + 1) / 1024)
    assert accuracy["p_value"] == pytest.approx(binomtest(7, 10, 0.5).pvalue)
    # Wilson by hand, and as statsmodels has it.
    z, p, n = norm.ppf(0.975), 0.7, 10
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert accuracy["ci"] == pytest.approx([centre - half, centre + half])
    assert accuracy["ci"] == pytest.approx(list(proportion_confint(7, 10, method="wilson")))
    sensitivity = pooled["sensitivity"]
    assert sensitivity["ci"] == pytest.approx(list(proportion_confint(4, 5, method="wilson")))
    assert sensitivity["p_value"] == pytest.approx(binomtest(4, 5).pvalue)


def test_the_confidence_level_sets_the_wilson_interval() -> None:
    readings = [
        Reading("solo", f"c{i}", "real", 1, "real" if i < 8 else "synthetic") for i in range(10)
    ]
    accuracy = study_statistics(readings, confidence=0.9)["pooled"]["accuracy"]
    assert accuracy["ci"] == pytest.approx(
        list(proportion_confint(8, 10, alpha=0.1, method="wilson"))
    )


def test_pooled_and_per_reader_figures_of_the_small_study() -> None:
    stats = as_json(study_statistics(small_study()))
    assert (stats["n_readers"], stats["n_cases"], stats["n_readings"]) == (3, 8, 23)
    accuracy = stats["pooled"]["accuracy"]
    # By hand: ann 5/8, bob 5/7 (one unanswered), cyd 4/8.
    assert (accuracy["k"], accuracy["n"]) == (14, 23)
    assert accuracy["ci"] == pytest.approx(list(proportion_confint(14, 23, method="wilson")))
    assert accuracy["p_value"] == pytest.approx(binomtest(14, 23).pvalue)
    expected = {"ann": (5, 8), "bob": (5, 7), "cyd": (4, 8)}
    assert set(stats["per_reader"]) == set(expected)
    for reader, (k, n) in expected.items():
        own = stats["per_reader"][reader]
        assert (own["accuracy"]["k"], own["accuracy"]["n"], own["n"]) == (k, n, n)
        assert own["accuracy"]["p_value"] == pytest.approx(binomtest(k, n).pvalue)
        truth = [CASES[c][0] for c, j in zip(ORDER, JUDGEMENTS[reader], strict=True) if j != "-"]
        said = [CALL[j] for j in JUDGEMENTS[reader] if j != "-"]
        tp = sum(t == s == "synthetic" for t, s in zip(truth, said, strict=True))
        tn = sum(t == s == "real" for t, s in zip(truth, said, strict=True))
        assert own["sensitivity"]["k"] == tp and own["sensitivity"]["n"] == truth.count("synthetic")
        assert own["specificity"]["k"] == tn and own["specificity"]["n"] == truth.count("real")


def test_fooling_rates_and_indistinguishable_images() -> None:
    fooling = study_statistics(small_study())["fooling"]
    # s1: one of three said real; s2: two of three; s3: all three; s4: none of two.
    per_image = fooling["per_image"]
    assert {case: image["n"] for case, image in per_image.items()} == {
        "s1": 3,
        "s2": 3,
        "s3": 3,
        "s4": 2,
    }
    assert {case: image["rate"] for case, image in per_image.items()} == pytest.approx(
        {"s1": 1 / 3, "s2": 2 / 3, "s3": 1.0, "s4": 0.0}
    )
    assert fooling["per_image"]["s2"]["fst"] == 4 and fooling["per_image"]["s4"]["fst"] is None
    assert fooling["mean_rate"] == pytest.approx(0.5)
    indistinguishable = fooling["indistinguishable"]
    assert (indistinguishable["k"], indistinguishable["n"], indistinguishable["value"]) == (
        2,
        4,
        0.5,
    )
    assert indistinguishable["ci"] == pytest.approx(list(proportion_confint(2, 4, method="wilson")))
    # Only images judged by all three readers: s4 drops out.
    strict = study_statistics(small_study(), min_readers_for_majority=3)["fooling"]
    assert (strict["indistinguishable"]["k"], strict["indistinguishable"]["n"]) == (2, 3)


def test_a_tie_is_not_a_majority() -> None:
    readings = [
        Reading("a", "s", "synthetic", 1, "real"),
        Reading("b", "s", "synthetic", 1, "synthetic"),
    ]
    indistinguishable = study_statistics(readings)["fooling"]["indistinguishable"]
    assert (indistinguishable["k"], indistinguishable["n"]) == (0, 1)


def test_agreement_against_statsmodels_and_scikit_learn() -> None:
    agreement = study_statistics(small_study())["agreement"]
    code = {"R": 0, "S": 1}
    everyone = [i for i in range(len(ORDER)) if all(JUDGEMENTS[r][i] != "-" for r in JUDGEMENTS)]
    data = np.array([[code[JUDGEMENTS[r][i]] for r in sorted(JUDGEMENTS)] for i in everyone])
    table, _ = aggregate_raters(data)
    fleiss = agreement["fleiss_kappa"]
    assert fleiss["n_cases"] == len(everyone) == 7
    assert fleiss["value"] == pytest.approx(fleiss_kappa(table))
    assert "judged by all 3 readers" in fleiss["note"]
    pairs = {(p["a"], p["b"]): p for p in agreement["cohen_kappa"]}
    assert set(pairs) == {("ann", "bob"), ("ann", "cyd"), ("bob", "cyd")}
    for (a, b), pair in pairs.items():
        shared = [i for i in range(len(ORDER)) if "-" not in (JUDGEMENTS[a][i], JUDGEMENTS[b][i])]
        first = [JUDGEMENTS[a][i] for i in shared]
        second = [JUDGEMENTS[b][i] for i in shared]
        assert pair["n"] == len(shared)
        assert pair["value"] == pytest.approx(cohen_kappa_score(first, second))


def test_realism_against_scipy() -> None:
    realism = study_statistics(small_study())["realism"]
    values: dict[str, list[int]] = {"real": [], "synthetic": []}
    for row in REALISM.values():
        for case, value in zip(ORDER, row, strict=True):
            if value != "-":
                values[CASES[case][0]].append(int(value))
    for origin, vals in values.items():
        assert realism[origin]["n"] == len(vals)
        assert realism[origin]["mean"] == pytest.approx(np.mean(vals))
        assert realism[origin]["median"] == pytest.approx(np.median(vals))
        assert realism["histogram"][origin] == [vals.count(level) for level in range(1, 8)]
    expected = mannwhitneyu(values["real"], values["synthetic"], alternative="two-sided")
    assert realism["mann_whitney"]["u"] == pytest.approx(expected.statistic)
    assert realism["mann_whitney"]["p_value"] == pytest.approx(expected.pvalue)


def test_abcd_realistic_items_against_scipy() -> None:
    realistic = study_statistics(small_study())["abcd"]["realistic"]
    rows = {"real": [0, 0], "synthetic": [0, 0]}
    for row in BORDER.values():
        for case, answer in zip(ORDER, row, strict=True):
            if answer != "-":
                rows[CASES[case][0]][0 if answer == "Y" else 1] += 1
    table = np.array([rows["real"], rows["synthetic"]])
    border = realistic["border"]
    assert (border["n_real"], border["n_synthetic"]) == (table[0].sum(), table[1].sum())
    assert border["real_rate"] == pytest.approx(table[0, 0] / table[0].sum())
    assert border["synthetic_rate"] == pytest.approx(table[1, 0] / table[1].sum())
    chi2, p, _, _ = chi2_contingency(table)
    assert (border["chi2"], border["p_value"]) == pytest.approx((chi2, p))
    # Asymmetry is realistic in every answer: a zero margin, so no test (and no NaN).
    asymmetry = realistic["asymmetry"]
    assert asymmetry["real_rate"] == asymmetry["synthetic_rate"] == 1.0
    assert asymmetry["chi2"] is None and asymmetry["p_value"] is None and asymmetry["note"]
    # Nobody answered the colour item.
    colour = realistic["colour"]
    assert (colour["n_real"], colour["real_rate"], colour["chi2"]) == (0, None, None)
    assert colour["note"]


def test_total_dermoscopy_score_by_hand_and_against_scipy() -> None:
    abcd = as_json(study_statistics(small_study()))["abcd"]
    tds = abcd["tds"]
    # 1.3 A + 0.1 B + 0.5 C + 0.5 D: ann r1 0+0.2+1.5+1.0, bob r1 1.3+0.4+2+1.5,
    # cyd r2 1.3+0.1+1+1; ann s1 2.6+0.8+3+2.5, cyd s2 2.6+0+0.5+0.5; bob s1 lacks scores.
    real, synthetic = [2.7, 5.2, 3.4], [8.9, 3.6]
    assert tds["real"]["n"] == 3 and tds["synthetic"]["n"] == 2
    assert tds["real"]["mean"] == pytest.approx(statistics.fmean(real))
    assert tds["real"]["median"] == pytest.approx(3.4)
    assert tds["synthetic"]["values_histogram"] == [
        {"tds": 3.6, "count": 1},
        {"tds": 8.9, "count": 1},
    ]
    assert tds["real"]["bands"] == {"benign": 2, "suspicious": 1, "melanoma": 0}
    assert tds["synthetic"]["bands"] == {"benign": 1, "suspicious": 0, "melanoma": 1}
    expected = mannwhitneyu(real, synthetic, alternative="two-sided")
    assert tds["mann_whitney"]["u"] == pytest.approx(expected.statistic)
    assert tds["mann_whitney"]["p_value"] == pytest.approx(expected.pvalue)
    # Partial scores still count in the per-item distributions.
    assert abcd["scores"]["asymmetry"]["levels"] == [0, 1, 2]
    assert abcd["scores"]["asymmetry"]["synthetic"] == [0, 1, 2]  # ann 2, bob 1, cyd 2
    assert sum(abcd["scores"]["colours"]["synthetic"]) == 2  # bob's s1 has none


def test_every_figure_is_defined_in_words() -> None:
    definitions = study_statistics(small_study())["definitions"]
    for name in (
        "accuracy",
        "pooled_accuracy",
        "sensitivity",
        "specificity",
        "fooling_rate",
        "indistinguishable",
        "fleiss_kappa",
        "cohen_kappa",
        "realism",
        "mann_whitney",
        "realistic_chi2",
        "tds",
    ):
        assert isinstance(definitions[name], str) and definitions[name].endswith(".")
    assert "synthetic" in definitions["positive_class"].lower()
    assert "not independent" in definitions["pooled_accuracy"]
    assert "1.3*A + 0.1*B + 0.5*C + 0.5*D" in definitions["tds"]


# --- FST groups ------------------------------------------------------------------------------


def test_fst_groups_split_the_readings_with_an_fst() -> None:
    readings = simulate_readings(3, 20, 20, skill=0.7, seed=5, fsts=(1, 2, 3, 4, 5, 6, None))
    readings = [
        dataclasses.replace(r, judgement=None) if i % 11 == 0 else r for i, r in enumerate(readings)
    ]
    stats = as_json(study_statistics(readings))
    groups = stats["per_fst_group"]
    assert list(groups) == ["I-III", "IV", "V-VI"]
    with_fst = [r for r in readings if r.fst is not None and r.judgement is not None]
    assert sum(g["n_readings"] for g in groups.values()) == len(with_fst) < stats["n_readings"]
    assert sum(g["pooled"]["accuracy"]["k"] for g in groups.values()) == sum(
        r.judgement == r.origin for r in with_fst
    )
    assert sum(len(g["fooling"]["per_image"]) for g in groups.values()) == len(
        {r.case for r in with_fst if r.origin == "synthetic"}
    )
    # Each group's figures are the figures of its readings alone.
    dark = [r for r in readings if r.fst in (5, 6)]
    alone = as_json(study_statistics(dark))
    for key in ("n_readings", "pooled", "per_reader", "fooling", "realism", "abcd"):
        assert groups["V-VI"][key] == alone[key]
    assert "agreement" not in groups["IV"] and "definitions" not in groups["IV"]


def test_a_group_without_readings_is_present_and_empty() -> None:
    stats = as_json(study_statistics(simulate_readings(2, 6, 6, skill=0.6, seed=1, fsts=(1, 2))))
    for name in ("IV", "V-VI"):
        group = stats["per_fst_group"][name]
        assert group["n_readings"] == 0 and group["per_reader"] == {}
        assert group["pooled"]["accuracy"]["value"] is None and group["pooled"]["accuracy"]["note"]
        assert group["fooling"]["mean_rate"] is None
        assert group["realism"]["real"]["mean"] is None
    assert stats["per_fst_group"]["I-III"]["n_readings"] == stats["n_readings"] == 24


# --- Simulated readers -----------------------------------------------------------------------


def test_random_readers_are_not_found_better_than_chance() -> None:
    """200 studies of 4 guessing readers x (50 + 50) images, seeded: deterministic."""
    trials = 200
    pooled_ok = reader_ok = readers = 0
    fleiss, indistinguishable, fooling = [], [], []
    for seed in range(trials):
        stats = study_statistics(simulate_readings(4, 50, 50, skill=0.5, seed=seed, fsts=(None,)))
        accuracy = stats["pooled"]["accuracy"]
        low, high = accuracy["ci"]
        pooled_ok += low <= 0.5 <= high and accuracy["p_value"] > 0.05
        for own in stats["per_reader"].values():
            low, high = own["accuracy"]["ci"]
            reader_ok += low <= 0.5 <= high and own["accuracy"]["p_value"] > 0.05
            readers += 1
        fleiss.append(stats["agreement"]["fleiss_kappa"]["value"])
        indistinguishable.append(stats["fooling"]["indistinguishable"]["value"])
        fooling.append(stats["fooling"]["mean_rate"])
    assert pooled_ok >= 0.9 * trials
    assert reader_ok >= 0.9 * readers == 0.9 * 4 * trials
    # Agreement at chance level; half of the calls fool; a strict majority (3 or 4 of 4) of
    # guessers says real with probability 5/16.
    assert abs(statistics.fmean(fleiss)) < 0.01
    assert statistics.fmean(fooling) == pytest.approx(0.5, abs=0.01)
    assert statistics.fmean(indistinguishable) == pytest.approx(5 / 16, abs=0.015)


def test_perfect_readers() -> None:
    stats = as_json(study_statistics(simulate_readings(4, 50, 50, skill=1.0, seed=0)))
    pooled = stats["pooled"]
    assert pooled["accuracy"]["value"] == 1.0 and pooled["accuracy"]["p_value"] < 0.001
    assert pooled["sensitivity"]["value"] == pooled["specificity"]["value"] == 1.0
    for own in stats["per_reader"].values():
        assert own["accuracy"]["value"] == 1.0 and own["accuracy"]["p_value"] < 0.001
    assert stats["fooling"]["indistinguishable"]["value"] == 0.0
    assert stats["fooling"]["mean_rate"] == 0.0
    assert stats["agreement"]["fleiss_kappa"]["value"] == pytest.approx(1.0)
    assert all(p["value"] == pytest.approx(1.0) for p in stats["agreement"]["cohen_kappa"])
    # The simulation rates synthetic images lower when readers can tell them apart.
    assert stats["realism"]["synthetic"]["mean"] < stats["realism"]["real"]["mean"]
    assert stats["realism"]["mann_whitney"]["p_value"] < 0.001


def test_guessing_readers_agree_at_chance_level() -> None:
    fleiss = study_statistics(simulate_readings(5, 200, 200, skill=0.5, seed=9, fsts=(None,)))[
        "agreement"
    ]["fleiss_kappa"]
    assert fleiss["n_cases"] == 400
    assert abs(fleiss["value"]) < 0.05


def test_contrarian_readers_are_always_wrong() -> None:
    accuracy = study_statistics(simulate_readings(2, 10, 10, skill=0.0, seed=3))["pooled"][
        "accuracy"
    ]
    assert accuracy["value"] == 0.0 and accuracy["p_value"] < 0.001


def test_the_simulation_is_seeded_and_cycles_the_skin_types() -> None:
    first = simulate_readings(3, 12, 6, skill=0.7, seed=4)
    assert first == simulate_readings(3, 12, 6, skill=0.7, seed=4)
    assert first != simulate_readings(3, 12, 6, skill=0.7, seed=5)
    assert len(first) == 3 * 18
    real_fsts = [r.fst for r in first if r.reader == "reader-01" and r.origin == "real"]
    synthetic_fsts = [r.fst for r in first if r.reader == "reader-01" and r.origin == "synthetic"]
    assert real_fsts == [1, 2, 3, 4, 5, 6] * 2 and synthetic_fsts == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_readers": 0}, "n_readers"),
        ({"skill": 1.5}, "skill"),
        ({"seed": -1}, "seed"),
        ({"fsts": (1, 7)}, "fsts"),
        ({"fsts": ()}, "fsts"),
    ],
)
def test_the_simulation_checks_its_arguments(kwargs: dict[str, Any], name: str) -> None:
    arguments: dict[str, Any] = {"n_readers": 2, "skill": 0.5, "seed": 0, **kwargs}
    n_readers = arguments.pop("n_readers")
    with pytest.raises(ValueError, match=rf"^{name}: "):
        simulate_readings(n_readers, 3, 3, **arguments)


# --- Validation ------------------------------------------------------------------------------


def fields(**changes: Any) -> dict[str, Any]:
    return {"reader": "a", "case": "c", "origin": "real", "fst": 2, "judgement": "real", **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"origin": "fake"}, r"^readings\[2\]\.origin: 'fake' is not 'real' or 'synthetic'"),
        ({"realism": 9}, r"^readings\[2\]\.realism: 9 is not in 1\.\.7$"),
        ({"realistic": {"shape": True}}, r"^readings\[2\]\.realistic: unknown key 'shape'"),
        ({"scores": {"colour": 2}}, r"^readings\[2\]\.scores: unknown key 'colour'"),
        ({"scores": {"border": 9}}, r"^readings\[2\]\.scores\['border'\]: 9 is not in 0\.\.8"),
        ({"realistic": {"border": "yes"}}, r"^readings\[2\]\.realistic\['border'\]: 'yes'"),
        ({"judgement": ""}, r"^readings\[2\]\.judgement: ''"),
        ({"fst": 7}, r"^readings\[2\]\.fst: 7"),
        ({"fst": True}, r"^readings\[2\]\.fst: True"),
        ({"reader": ""}, r"^readings\[2\]\.reader: ''"),
        ({"colour": 1}, r"^readings\[2\]\.colour: not a field of Reading"),
    ],
)
def test_a_bad_reading_is_named_by_index_and_field(changes: dict[str, Any], message: str) -> None:
    readings = [fields(case="c0"), fields(case="c1"), fields(case="c2", **changes)]
    with pytest.raises(ValueError, match=message):
        study_statistics(readings)


def test_a_reading_checks_its_fields_on_construction() -> None:
    with pytest.raises(ValueError, match=r"^realism: 9 is not in 1\.\.7$"):
        Reading("a", "c", "real", 1, "real", realism=9)
    with pytest.raises(ValueError, match=r"^origin: 'fake'"):
        Reading("a", "c", "fake", 1, "real")
    with pytest.raises(ValueError, match=r"^realistic: unknown key 'shape'"):
        Reading("a", "c", "real", 1, "real", realistic={"shape": False})


def test_a_reading_changed_after_construction_is_caught_with_its_index() -> None:
    readings = [Reading("a", f"c{i}", "real", 1, "real", realism=4) for i in range(3)]
    object.__setattr__(readings[1], "realism", 9)
    with pytest.raises(ValueError, match=r"^readings\[1\]\.realism: 9 is not in 1\.\.7$"):
        study_statistics(readings)


def test_a_case_keeps_one_origin_and_fst_and_a_reader_reads_it_once() -> None:
    with pytest.raises(
        ValueError, match=r"^readings\[1\]\.origin: 'synthetic' differs .* readings\[0\]"
    ):
        study_statistics([fields(reader="a"), fields(reader="b", origin="synthetic")])
    with pytest.raises(ValueError, match=r"^readings\[1\]\.fst: 3 differs"):
        study_statistics([fields(reader="a"), fields(reader="b", fst=3)])
    with pytest.raises(ValueError, match=r"^readings\[1\]\.case: reader 'a' already read case 'c'"):
        study_statistics([fields(), fields(judgement="synthetic")])


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"^readings\[0\]: expected a Reading"):
        study_statistics([42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"^readings: "):
        study_statistics("readings")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^confidence: "):
        study_statistics([], confidence=1.0)
    with pytest.raises(ValueError, match=r"^min_readers_for_majority: "):
        study_statistics([], min_readers_for_majority=0)


# --- Degenerate inputs -----------------------------------------------------------------------


def test_no_readings() -> None:
    stats = as_json(study_statistics([]))
    assert (stats["n_readers"], stats["n_cases"], stats["n_readings"]) == (0, 0, 0)
    for name in ("accuracy", "sensitivity", "specificity"):
        figure = stats["pooled"][name]
        assert figure["value"] is None and figure["ci"] is None and figure["p_value"] is None
        assert figure["note"]
    assert stats["per_reader"] == {} and stats["fooling"]["per_image"] == {}
    assert stats["fooling"]["indistinguishable"]["value"] is None
    assert stats["agreement"]["fleiss_kappa"]["value"] is None
    assert stats["agreement"]["cohen_kappa"] == []
    assert stats["realism"]["mann_whitney"]["p_value"] is None
    assert stats["abcd"]["tds"]["real"]["n"] == 0
    assert all(g["n_readings"] == 0 for g in stats["per_fst_group"].values())


def test_one_reader_has_no_agreement() -> None:
    stats = as_json(study_statistics(simulate_readings(1, 5, 5, skill=0.8, seed=2)))
    assert stats["agreement"]["cohen_kappa"] == []
    fleiss = stats["agreement"]["fleiss_kappa"]
    assert fleiss["value"] is None and "two readers" in fleiss["note"]
    assert stats["pooled"]["accuracy"]["n"] == 10


@pytest.mark.filterwarnings("error")
def test_everyone_saying_real_leaves_kappa_undefined_without_nan() -> None:
    readings = [
        dataclasses.replace(r, judgement="real")
        for r in simulate_readings(3, 4, 4, skill=0.5, seed=0)
    ]
    stats = as_json(study_statistics(readings))
    for pair in stats["agreement"]["cohen_kappa"]:
        assert pair["value"] is None and pair["n"] == 8 and "undefined" in pair["note"]
    fleiss = stats["agreement"]["fleiss_kappa"]
    assert fleiss["value"] is None and "undefined" in fleiss["note"]
    assert stats["pooled"]["sensitivity"]["value"] == 0.0
    assert stats["pooled"]["specificity"]["value"] == 1.0
    assert stats["fooling"]["indistinguishable"]["value"] == 1.0


@pytest.mark.filterwarnings("error")
def test_one_constant_reader_still_has_a_cohen_kappa() -> None:
    """Kappa is defined (0) when only one of the two readers always says the same."""
    readings = [Reading("a", f"c{i}", "real", 1, "real") for i in range(4)] + [
        Reading("b", f"c{i}", "real", 1, "real" if i % 2 else "synthetic") for i in range(4)
    ]
    (pair,) = study_statistics(readings)["agreement"]["cohen_kappa"]
    assert pair["value"] == pytest.approx(0.0)
    assert pair["value"] == pytest.approx(
        cohen_kappa_score(["real"] * 4, ["synthetic", "real"] * 2)
    )


def test_unanswered_judgements_still_give_their_ratings() -> None:
    readings = [
        Reading("a", "c1", "real", 1, None, realism=6),
        Reading("a", "c2", "synthetic", 1, None, realism=2),
    ]
    stats = study_statistics(readings)
    assert stats["n_readings"] == 0 and stats["n_readings_all"] == 2
    assert stats["pooled"]["accuracy"]["value"] is None
    assert stats["realism"]["real"]["mean"] == 6 and stats["realism"]["synthetic"]["n"] == 1

"""Statistics of a blinded reader study: can readers tell real images from synthetic ones?

One ``Reading`` is one reader's answers for one case. ``study_statistics`` turns a study's
readings into one JSON-serialisable dict (no NaN anywhere: an undefined figure is ``None``
with a ``note`` saying why) for the go/no-go dashboard:

- accuracy at telling real from synthetic, pooled and per reader, with Wilson intervals
  (statsmodels' ``proportion_confint``) and exact two-sided binomial tests against 0.5
  (scipy's ``binomtest``); sensitivity and specificity with **synthetic as the positive class**;
- the fooling rate of each synthetic image and the share of synthetic images that a strict
  majority of their readers called real ("indistinguishable");
- Fleiss' kappa across readers and Cohen's kappa for each pair of readers (statsmodels);
- realism ratings (1-7) real vs synthetic with a two-sided Mann-Whitney U test (scipy);
- the ABCD "realistic for this lesion type?" items real vs synthetic with a chi-square test on
  each 2x2 table (scipy's ``chi2_contingency``), and the dermoscopic ABCD (Stolz) scores with
  the total dermoscopy score (TDS);
- every figure but the agreement again for each FST group ("I-III", "IV", "V-VI").

The tests are the textbook ones and treat every reading as independent. Readings of one image
by several readers are not independent, nor are one reader's readings of several images, so the
pooled p-values and intervals are optimistic; the per-reader figures do not have that problem.

``simulate_readings`` makes simulated readers of known skill. It exists for the tests and for
demos that say they are simulated; its output is not data.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import combinations
from typing import Any

import numpy as np
from scipy.stats import binomtest, chi2_contingency, mannwhitneyu
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa, fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from validation.checks import check_float, check_int
from validation.vocabulary import FST_GROUPS, fst_group

#: The truth of a case and a reader's judgement take these values.
ORIGINS: tuple[str, str] = ("real", "synthetic")
#: The positive class of sensitivity and specificity.
POSITIVE = "synthetic"
REALISM_LEVELS: tuple[int, ...] = tuple(range(1, 8))
#: "Realistic for this lesion type?" asked per ABCD criterion.
REALISTIC_KEYS: tuple[str, ...] = ("asymmetry", "border", "colour", "diameter")
#: The dermoscopic ABCD scores of the Stolz rule and their ranges.
SCORE_RANGES: dict[str, tuple[int, int]] = {
    "asymmetry": (0, 2),
    "border": (0, 8),
    "colours": (1, 6),
    "structures": (1, 5),
}
#: Total dermoscopy score: TDS = 1.3*A + 0.1*B + 0.5*C + 0.5*D.
TDS_WEIGHTS: dict[str, float] = {
    "asymmetry": 1.3,
    "border": 0.1,
    "colours": 0.5,
    "structures": 0.5,
}
#: Stolz's reading of the TDS: below 4.75 benign, 4.75-5.45 suspicious, above 5.45 melanoma.
TDS_SUSPICIOUS = 4.75
TDS_MELANOMA = 5.45


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Reading:
    """One reader's answers for one case of a blinded reader study.

    Attributes:
        reader: Opaque reader id.
        case: Opaque case id.
        origin: The truth, "real" or "synthetic".
        fst: The case's Fitzpatrick skin type 1..6, or ``None`` (then it joins no FST group).
        judgement: "real", "synthetic", or ``None`` when not answered (such a reading is left
            out of every judgement figure, but its realism and ABCD answers still count).
        realism: Realism rating 1..7, or ``None``.
        realistic: "Realistic for this lesion type?" per criterion ("asymmetry", "border",
            "colour", "diameter"): True, False or None; a missing key is None.
        scores: Dermoscopic ABCD (Stolz) scores "asymmetry" 0-2, "border" 0-8, "colours" 1-6,
            "structures" 1-5, each an int or None; a missing key is None.

    Every field is checked on construction; a ``ValueError`` names the field and the value.
    """

    reader: str
    case: str
    origin: str
    fst: int | None
    judgement: str | None
    realism: int | None = None
    realistic: Mapping[str, bool | None] = field(default_factory=dict)
    scores: Mapping[str, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()
        # Plain built-in values: a copy of the mappings (the caller's may change later) and
        # ints rather than numpy integers, so the statistics serialise as JSON.
        if self.fst is not None:
            object.__setattr__(self, "fst", int(self.fst))
        if self.realism is not None:
            object.__setattr__(self, "realism", int(self.realism))
        object.__setattr__(self, "realistic", dict(self.realistic))
        object.__setattr__(
            self,
            "scores",
            {k: None if v is None else int(v) for k, v in self.scores.items()},
        )

    def validate(self) -> None:
        """Raise ``ValueError("<field>: <value> ...")`` for the first invalid field."""
        for name in ("reader", "case"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}: {value!r} is not a non-empty string")
        if self.origin not in ORIGINS:
            raise ValueError(f"origin: {self.origin!r} is not 'real' or 'synthetic'")
        if self.fst is not None and not (_is_int(self.fst) and 1 <= self.fst <= 6):
            raise ValueError(f"fst: {self.fst!r} is not in 1..6 or None")
        if self.judgement is not None and self.judgement not in ORIGINS:
            raise ValueError(
                f"judgement: {self.judgement!r} is not 'real', 'synthetic' or None (not answered)"
            )
        if self.realism is not None and not (_is_int(self.realism) and 1 <= self.realism <= 7):
            raise ValueError(f"realism: {self.realism!r} is not in 1..7")
        if not isinstance(self.realistic, Mapping):
            raise ValueError(f"realistic: {self.realistic!r} is not a mapping")
        for key, value in self.realistic.items():
            if key not in REALISTIC_KEYS:
                raise ValueError(
                    f"realistic: unknown key {key!r} (known: {', '.join(REALISTIC_KEYS)})"
                )
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"realistic[{key!r}]: {value!r} is not True, False or None")
        if not isinstance(self.scores, Mapping):
            raise ValueError(f"scores: {self.scores!r} is not a mapping")
        for key, value in self.scores.items():
            if key not in SCORE_RANGES:
                raise ValueError(f"scores: unknown key {key!r} (known: {', '.join(SCORE_RANGES)})")
            low, high = SCORE_RANGES[key]
            if value is not None and not (_is_int(value) and low <= value <= high):
                raise ValueError(f"scores[{key!r}]: {value!r} is not in {low}..{high} or None")

    @property
    def correct(self) -> bool | None:
        """Whether the judgement matches the truth; ``None`` when not answered."""
        return None if self.judgement is None else self.judgement == self.origin

    @property
    def tds(self) -> float | None:
        """The total dermoscopy score, or ``None`` unless all four scores are given."""
        values = [self.scores.get(key) for key in TDS_WEIGHTS]
        if any(v is None for v in values):
            return None
        # Every TDS is a multiple of 0.1: rounding removes the float noise of the weights.
        return round(sum(w * v for w, v in zip(TDS_WEIGHTS.values(), values, strict=True)), 1)


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Reading))
_REQUIRED_FIELDS: tuple[str, ...] = ("reader", "case", "origin", "fst", "judgement")


def _as_reading(item: Reading | Mapping[str, Any]) -> Reading:
    """``item`` if it is a valid ``Reading``; a ``Reading`` made from a mapping of its fields."""
    if isinstance(item, Reading):
        item.validate()  # cheap, and catches instances changed behind the frozen dataclass
        return item
    for key in item:
        if key not in _FIELD_NAMES:
            raise ValueError(f"{key}: not a field of Reading (fields: {', '.join(_FIELD_NAMES)})")
    for name in _REQUIRED_FIELDS:
        if name not in item:
            raise ValueError(f"{name}: missing")
    return Reading(**item)


def check_readings(readings: Iterable[Reading | Mapping[str, Any]]) -> list[Reading]:
    """Validate a study's readings, naming the index of the first bad one.

    Each item is a ``Reading`` or a mapping of ``Reading``'s fields. Besides each reading's own
    fields this checks that a case has one origin and one FST in every reading of it, and that
    no reader reads a case twice. Errors read ``"readings[3].realism: 9 is not in 1..7"``.
    """
    if isinstance(readings, str | bytes | Mapping) or not isinstance(readings, Iterable):
        raise ValueError(f"readings: expected a sequence of Reading, got {type(readings)!r}")
    checked: list[Reading] = []
    first_of_case: dict[str, int] = {}
    first_of_pair: dict[tuple[str, str], int] = {}
    for index, item in enumerate(readings):
        where = f"readings[{index}]"
        if not isinstance(item, Reading | Mapping):
            raise ValueError(
                f"{where}: expected a Reading or a mapping of its fields, got {item!r}"
            )
        try:
            reading = _as_reading(item)
        except ValueError as error:
            raise ValueError(f"{where}.{error}") from None
        if reading.case in first_of_case:
            first = checked[first_of_case[reading.case]]
            for name in ("origin", "fst"):
                if getattr(reading, name) != getattr(first, name):
                    raise ValueError(
                        f"{where}.{name}: {getattr(reading, name)!r} differs from "
                        f"{getattr(first, name)!r} given for case {reading.case!r} in "
                        f"readings[{first_of_case[reading.case]}]"
                    )
        else:
            first_of_case[reading.case] = index
        pair = (reading.reader, reading.case)
        if pair in first_of_pair:
            raise ValueError(
                f"{where}.case: reader {reading.reader!r} already read case {reading.case!r} "
                f"in readings[{first_of_pair[pair]}]"
            )
        first_of_pair[pair] = index
        checked.append(reading)
    return checked


# --- figures -------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is missing or not finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _proportion(k: int, n: int, confidence: float, empty: str) -> dict[str, Any]:
    """Share ``k/n`` with its Wilson interval and the exact two-sided binomial test vs 0.5."""
    if n == 0:
        return {"value": None, "ci": None, "k": 0, "n": 0, "p_value": None, "note": empty}
    low, high = proportion_confint(k, n, alpha=1.0 - confidence, method="wilson")
    return {
        "value": k / n,
        "ci": [float(low), float(high)],
        "k": k,
        "n": n,
        "p_value": float(binomtest(k, n, 0.5, alternative="two-sided").pvalue),
        "note": None,
    }


def _judgement_figures(judged: Sequence[Reading], confidence: float) -> dict[str, Any]:
    """Accuracy, sensitivity and specificity (synthetic = positive) of some judged readings."""
    synthetic = [r for r in judged if r.origin == "synthetic"]
    real = [r for r in judged if r.origin == "real"]
    return {
        "accuracy": _proportion(
            sum(bool(r.correct) for r in judged), len(judged), confidence, "no judgements"
        ),
        "sensitivity": _proportion(
            sum(r.judgement == "synthetic" for r in synthetic),
            len(synthetic),
            confidence,
            "no judgements of synthetic images",
        ),
        "specificity": _proportion(
            sum(r.judgement == "real" for r in real),
            len(real),
            confidence,
            "no judgements of real images",
        ),
    }


def _fooling(judged: Sequence[Reading], confidence: float, min_readers: int) -> dict[str, Any]:
    calls: dict[str, list[bool]] = defaultdict(list)
    fst_of: dict[str, int | None] = {}
    for r in judged:
        if r.origin == "synthetic":
            calls[r.case].append(r.judgement == "real")
            fst_of[r.case] = r.fst
    per_image = {
        case: {"rate": sum(said_real) / len(said_real), "n": len(said_real), "fst": fst_of[case]}
        for case, said_real in sorted(calls.items())
    }
    rates = [image["rate"] for image in per_image.values()]
    eligible = [calls[case] for case in per_image if len(calls[case]) >= min_readers]
    majority = sum(2 * sum(said_real) > len(said_real) for said_real in eligible)
    indistinguishable = _proportion(
        majority,
        len(eligible),
        confidence,
        f"no synthetic image was judged by at least {min_readers} reader(s)",
    )
    del indistinguishable["p_value"]  # a test against one half means nothing here
    return {
        "per_image": per_image,
        "mean_rate": statistics.fmean(rates) if rates else None,
        "mean_rate_note": None if rates else "no judgements of synthetic images",
        "indistinguishable": indistinguishable,
        "min_readers_for_majority": min_readers,
    }


def _summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "median": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "median": float(statistics.median(values)),
        "n": len(values),
    }


def _mann_whitney(real: Sequence[float], synthetic: Sequence[float]) -> dict[str, Any]:
    """Two-sided Mann-Whitney U of real vs synthetic; ``u`` is the real sample's U."""
    if not real or not synthetic:
        return {"u": None, "p_value": None, "note": "needs values for both real and synthetic"}
    result = mannwhitneyu(real, synthetic, alternative="two-sided")
    u, p = _finite(result.statistic), _finite(result.pvalue)
    return {"u": u, "p_value": p, "note": None if p is not None else "the test is undefined"}


def _realism(readings: Sequence[Reading]) -> dict[str, Any]:
    values = {
        origin: [r.realism for r in readings if r.origin == origin and r.realism is not None]
        for origin in ORIGINS
    }
    counts = {origin: Counter(v) for origin, v in values.items()}
    return {
        "real": _summary(values["real"]),
        "synthetic": _summary(values["synthetic"]),
        "mann_whitney": _mann_whitney(values["real"], values["synthetic"]),
        "histogram": {
            origin: [counts[origin][level] for level in REALISM_LEVELS] for origin in ORIGINS
        },
    }


def _realistic_item(readings: Sequence[Reading], key: str) -> dict[str, Any]:
    answers = {
        origin: [
            r.realistic[key]
            for r in readings
            if r.origin == origin and r.realistic.get(key) is not None
        ]
        for origin in ORIGINS
    }
    table = np.array([[sum(a), len(a) - sum(a)] for a in answers.values()])  # rows real, synth
    item: dict[str, Any] = {
        "real_rate": sum(answers["real"]) / len(answers["real"]) if answers["real"] else None,
        "synthetic_rate": (
            sum(answers["synthetic"]) / len(answers["synthetic"]) if answers["synthetic"] else None
        ),
        "n_real": len(answers["real"]),
        "n_synthetic": len(answers["synthetic"]),
        "table": table.tolist(),
        "chi2": None,
        "p_value": None,
        "note": None,
    }
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        item["note"] = (
            "a margin of the 2x2 table is zero (no answers for one origin, or every answer the "
            "same): the chi-square test is undefined"
        )
        return item
    chi2, p, _, _ = chi2_contingency(table)
    item["chi2"], item["p_value"] = _finite(chi2), _finite(p)
    return item


def _tds_side(values: Sequence[float]) -> dict[str, Any]:
    side = _summary(values)
    side["values_histogram"] = [
        {"tds": tds, "count": count} for tds, count in sorted(Counter(values).items())
    ]
    side["bands"] = {
        "benign": sum(v < TDS_SUSPICIOUS for v in values),
        "suspicious": sum(TDS_SUSPICIOUS <= v <= TDS_MELANOMA for v in values),
        "melanoma": sum(v > TDS_MELANOMA for v in values),
    }
    return side


def _abcd(readings: Sequence[Reading]) -> dict[str, Any]:
    tds = {
        origin: [t for r in readings if r.origin == origin and (t := r.tds) is not None]
        for origin in ORIGINS
    }
    scores = {}
    for key, (low, high) in SCORE_RANGES.items():
        counts = {
            origin: Counter(
                r.scores[key]
                for r in readings
                if r.origin == origin and r.scores.get(key) is not None
            )
            for origin in ORIGINS
        }
        levels = list(range(low, high + 1))
        scores[key] = {
            "levels": levels,
            **{origin: [counts[origin][v] for v in levels] for origin in ORIGINS},
        }
    return {
        "realistic": {key: _realistic_item(readings, key) for key in REALISTIC_KEYS},
        "tds": {
            "real": _tds_side(tds["real"]),
            "synthetic": _tds_side(tds["synthetic"]),
            "mann_whitney": _mann_whitney(tds["real"], tds["synthetic"]),
        },
        "scores": scores,
    }


def _figures(readings: Sequence[Reading], confidence: float, min_readers: int) -> dict[str, Any]:
    """Every figure but the agreement, for one set of readings (the study or an FST group)."""
    judged = [r for r in readings if r.judgement is not None]
    by_reader: dict[str, list[Reading]] = defaultdict(list)
    for r in judged:
        by_reader[r.reader].append(r)
    return {
        "n_readers": len(by_reader),
        "n_cases": len({r.case for r in judged}),
        "n_readings": len(judged),
        "n_readings_all": len(readings),
        "pooled": _judgement_figures(judged, confidence),
        "per_reader": {
            reader: {**_judgement_figures(own, confidence), "n": len(own)}
            for reader, own in sorted(by_reader.items())
        },
        "fooling": _fooling(judged, confidence, min_readers),
        "realism": _realism(readings),
        "abcd": _abcd(readings),
    }


_CODE = {"real": 0, "synthetic": 1}


def _agreement(judged: Sequence[Reading]) -> dict[str, Any]:
    by_reader: dict[str, dict[str, str]] = defaultdict(dict)
    for r in judged:
        by_reader[r.reader][r.case] = str(r.judgement)
    readers = sorted(by_reader)
    fleiss: dict[str, Any] = {"value": None, "n_cases": 0, "n_readers": len(readers)}
    if len(readers) < 2:
        fleiss["note"] = "Fleiss' kappa needs at least two readers"
    else:
        common = sorted(set.intersection(*(set(by_reader[x]) for x in readers)))
        fleiss["n_cases"] = len(common)
        if not common:
            fleiss["note"] = "no case was judged by every reader"
        else:
            data = np.array([[_CODE[by_reader[x][case]] for x in readers] for case in common])
            if np.unique(data).size < 2:
                fleiss["note"] = (
                    f"over the {len(common)} case(s) every reader judged, every judgement was "
                    "the same: kappa is undefined (chance agreement is 1)"
                )
            else:
                table, _ = aggregate_raters(data, n_cat=2)
                fleiss["value"] = _finite(fleiss_kappa(table, method="fleiss"))
                fleiss["note"] = (
                    f"over the {len(common)} case(s) judged by all {len(readers)} readers"
                )
    pairs = []
    for a, b in combinations(readers, 2):
        shared = sorted(set(by_reader[a]) & set(by_reader[b]))
        first = [by_reader[a][case] for case in shared]
        second = [by_reader[b][case] for case in shared]
        pair: dict[str, Any] = {"a": a, "b": b, "value": None, "n": len(shared), "note": None}
        if not shared:
            pair["note"] = "no case judged by both readers"
        elif len(set(first) | set(second)) < 2:
            pair["note"] = (
                "both readers gave the same judgement on every shared case: kappa is "
                "undefined (chance agreement is 1)"
            )
        else:
            table = np.zeros((2, 2))
            for x, y in zip(first, second, strict=True):
                table[_CODE[x], _CODE[y]] += 1
            pair["value"] = _finite(cohens_kappa(table, return_results=False))
        pairs.append(pair)
    return {"fleiss_kappa": fleiss, "cohen_kappa": pairs}


def _definitions(confidence: float, min_readers: int) -> dict[str, str]:
    level = f"{confidence:.4g}".rstrip("0").rstrip(".")
    return {
        "positive_class": "Synthetic is the positive class: a reader calling a synthetic image "
        "synthetic is a true positive.",
        "n_readers": "Readers with at least one judgement (real or synthetic).",
        "n_cases": "Cases with at least one judgement.",
        "n_readings": "Judged readings: one reader's judgement of one case; unanswered "
        "judgements are left out of every judgement figure.",
        "n_readings_all": "All readings given, judged or not (realism and ABCD answers of "
        "unjudged readings still count).",
        "accuracy": "Share of judgements that match the truth (real called real, synthetic "
        "called synthetic).",
        "pooled_accuracy": "Accuracy over all judgements of all readers pooled together; the "
        "judgements are not independent (each reader judges many images and each image is "
        "judged by several readers), so its interval and p-value are optimistic.",
        "sensitivity": "Share of judgements of synthetic images that say synthetic.",
        "specificity": "Share of judgements of real images that say real.",
        "ci": f"Wilson score interval at confidence {level} (statsmodels proportion_confint, "
        "method='wilson').",
        "p_value": "Two-sided exact binomial test of the share against 0.5 (scipy binomtest); "
        "for accuracy, a small p-value says readers do better (or worse) than guessing.",
        "per_reader": "Accuracy, sensitivity and specificity of each reader's own judgements.",
        "fooling_rate": "Of one synthetic image: the share of its judgements that say real.",
        "mean_fooling_rate": "The mean of the fooling rates of the synthetic images with at "
        "least one judgement, each image weighted equally.",
        "indistinguishable": "Share of synthetic images that a strict majority of the readers "
        f"who judged them called real (ties do not count), over the synthetic images judged by "
        f"at least {min_readers} reader(s); Wilson interval over images.",
        "fleiss_kappa": "Fleiss' kappa of the real/synthetic judgements (statsmodels "
        "aggregate_raters and fleiss_kappa) over the cases that every reader judged: 1 is "
        "perfect agreement, 0 agreement at chance level.",
        "cohen_kappa": "Cohen's kappa of each pair of readers (statsmodels cohens_kappa on the "
        "2x2 table of their judgements) over the cases both judged.",
        "realism": "The 1-7 realism ratings of real and of synthetic images: mean, median and "
        "a histogram of counts for 1..7.",
        "mann_whitney": "Two-sided Mann-Whitney U test (scipy mannwhitneyu) of real against "
        "synthetic values; u is the statistic of the real sample; readings are treated as "
        "independent.",
        "realistic_rate": "Per ABCD criterion: share of answers saying the image is realistic "
        "for its lesion type, among the answers given for real (or synthetic) images.",
        "realistic_chi2": "Chi-square test of independence (scipy chi2_contingency, with Yates' "
        "continuity correction as for any 2x2 table) of origin x realistic; undefined when a "
        "margin of the table is zero.",
        "tds": "Total dermoscopy score (Stolz) TDS = 1.3*A + 0.1*B + 0.5*C + 0.5*D, from the "
        "asymmetry (0-2), border (0-8), colours (1-6) and structures (1-5) scores, only for "
        "readings with all four scores.",
        "tds_bands": "Stolz's reading of the TDS: benign below 4.75, suspicious from 4.75 to "
        "5.45, melanoma above 5.45.",
        "scores": "Per dermoscopic ABCD item: counts of each score level for real and for "
        "synthetic images.",
        "per_fst_group": "The same figures (all but the agreement) over the readings of cases of "
        "each FST group (I-III, IV, V-VI); readings without an FST join no group.",
    }


def study_statistics(
    readings: Sequence[Reading | Mapping[str, Any]],
    *,
    confidence: float = 0.95,
    min_readers_for_majority: int = 1,
) -> dict[str, Any]:
    """Every reader-study figure of the go/no-go dashboard, as one JSON-serialisable dict.

    Args:
        readings: The study's readings: ``Reading`` objects or mappings of their fields.
        confidence: Level of the Wilson intervals (0.5..0.9999).
        min_readers_for_majority: A synthetic image counts towards "indistinguishable" only if
            at least this many readers judged it.

    Returns:
        A dict with "definitions", "notes", "n_readers", "n_cases", "n_readings", "pooled",
        "per_reader", "fooling", "agreement", "realism", "abcd" and "per_fst_group" (see the
        module docstring and the "definitions" entry). Undefined figures are ``None`` with a
        "note"; there is no NaN.

    Raises:
        ValueError: naming the argument, or the reading's index and field
            (``"readings[3].realism: 9 is not in 1..7"``).
    """
    confidence = check_float("confidence", confidence, 0.5, 0.9999)
    min_readers = check_int("min_readers_for_majority", min_readers_for_majority, 1, 1_000_000)
    checked = check_readings(readings)
    figures = _figures(checked, confidence, min_readers)
    judged = [r for r in checked if r.judgement is not None]
    groups: dict[str, list[Reading]] = {name: [] for name in FST_GROUPS}
    for r in checked:
        if r.fst is not None:
            groups[fst_group(r.fst)].append(r)
    return {
        "definitions": _definitions(confidence, min_readers),
        "confidence": confidence,
        "positive_class": POSITIVE,
        "notes": [
            "Pooled figures pool the judgements of all readers; readings are not independent "
            "across readers or images, so pooled intervals and p-values are optimistic.",
            f"{sum(r.fst is None for r in checked)} reading(s) without an FST are in no FST group.",
        ],
        **figures,
        "agreement": _agreement(judged),
        "per_fst_group": {
            name: _figures(subset, confidence, min_readers) for name, subset in groups.items()
        },
    }


# --- simulation ----------------------------------------------------------------------------


def simulate_readings(
    n_readers: int,
    n_real: int,
    n_synthetic: int,
    *,
    skill: float,
    seed: int,
    fsts: Sequence[int | None] = (1, 2, 3, 4, 5, 6),
) -> list[Reading]:
    """SIMULATED readings, for tests and for demos labelled as simulated. Not data.

    Every reader reads every case (cases "real-0001".., "synthetic-0001"..; readers
    "reader-01"..) and calls it correctly with probability ``skill``, independently of
    everything else: 0.5 is guessing, 1.0 a perfect reader, below 0.5 a contrarian one. The
    other answers are drawn from fixed distributions: realism around 5 of 7, each ABCD item
    "realistic" 85% of the time, and plausible Stolz scores. When ``skill`` > 0.5 the synthetic
    images fare a little worse on all of them, the more so the higher the skill (realism up to
    1.5 points lower, "realistic" up to 35 points rarer, one colour and one structure fewer).

    Args:
        n_readers: 1..1000.
        n_real, n_synthetic: Cases of each origin, 0..100000.
        skill: Probability of a correct judgement, 0..1.
        seed: Seed of numpy's generator; the same arguments give the same readings.
        fsts: Skin types (or None) cycled over the real cases, and again over the synthetic
            ones, so both halves have the same mix.
    """
    n_readers = check_int("n_readers", n_readers, 1, 1000)
    n_real = check_int("n_real", n_real, 0, 100_000)
    n_synthetic = check_int("n_synthetic", n_synthetic, 0, 100_000)
    skill = check_float("skill", skill, 0.0, 1.0)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    if isinstance(fsts, str) or not isinstance(fsts, Sequence) or not fsts:
        raise ValueError(f"fsts: {fsts!r} is not a non-empty sequence of skin types")
    for value in fsts:
        if value is not None and not (_is_int(value) and 1 <= value <= 6):
            raise ValueError(f"fsts: {value!r} is not in 1..6 or None")
    cases = [(f"real-{i + 1:04d}", "real", fsts[i % len(fsts)]) for i in range(n_real)] + [
        (f"synthetic-{i + 1:04d}", "synthetic", fsts[i % len(fsts)]) for i in range(n_synthetic)
    ]
    n = len(cases)
    tell = max(0.0, 2.0 * skill - 1.0)  # 0 when guessing, 1 for a perfect reader
    is_synthetic = np.array([origin == "synthetic" for _, origin, _ in cases], dtype=bool)
    rng = np.random.default_rng(seed)
    readings = []
    for index in range(n_readers):
        correct = rng.random(n) < skill
        realism = np.clip(np.rint(rng.normal(5.0 - 1.5 * tell * is_synthetic, 1.2)), 1, 7)
        realistic = (
            rng.random((n, len(REALISTIC_KEYS))) < (0.85 - 0.35 * tell * is_synthetic)[:, None]
        )
        asymmetry = rng.choice(3, size=n, p=[0.4, 0.35, 0.25])
        border = rng.binomial(8, 0.3, size=n)
        colours = np.clip(1 + rng.binomial(5, 0.4, size=n) - np.rint(tell * is_synthetic), 1, 6)
        structures = np.clip(1 + rng.binomial(4, 0.45, size=n) - np.rint(tell * is_synthetic), 1, 5)
        for j, (case, origin, fst) in enumerate(cases):
            wrong = "real" if origin == "synthetic" else "synthetic"
            readings.append(
                Reading(
                    reader=f"reader-{index + 1:02d}",
                    case=case,
                    origin=origin,
                    fst=fst,
                    judgement=origin if correct[j] else wrong,
                    realism=int(realism[j]),
                    realistic={key: bool(realistic[j, k]) for k, key in enumerate(REALISTIC_KEYS)},
                    scores={
                        "asymmetry": int(asymmetry[j]),
                        "border": int(border[j]),
                        "colours": int(colours[j]),
                        "structures": int(structures[j]),
                    },
                )
            )
    return readings

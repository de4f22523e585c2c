"""The go/no-go decision: the seed's targets, each judged on its evidence, and the verdict.

A target is one number against one threshold (``TargetSpec``): FID < 20, mean expert realism
> 5/7 and so on, each with its written definition. A project may move the thresholds, turn
targets off and choose the decision rule (``TargetSettings``). Each target is then judged on
the ``Evidence`` found for it:

* ``pending``: no evidence yet (no evaluation run, no closed study, ...), or, under the
  ``ci`` rule, a confidence interval that straddles the threshold;
* ``not comparable``: a value exists but it may not be held against a literature target:
  non-official weights, too few images or readers, phantom data, simulated readers. Such a
  value is shown, never counted as a pass;
* ``pass`` / ``fail``: the value (rule ``point``) or its whole CI (rule ``ci``) meets the
  threshold, or the value does not.

The verdict (``decide``): NO-GO when any enabled target fails, GO when every enabled target
passes, INCOMPLETE otherwise, each with its reasons. ``failure_modes`` names the seed's three
failure modes (FID too high, distribution shift, overfitting to synthetic artifacts) with the
evidence that triggered them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from scipy.stats import ks_2samp

Op = Literal["<", ">", "<=", ">="]
Status = Literal["pass", "fail", "pending", "not comparable"]
Verdict = Literal["GO", "NO-GO", "INCOMPLETE"]
Rule = Literal["point", "ci"]

STATUSES: tuple[Status, ...] = ("pass", "fail", "pending", "not comparable")
RULES: tuple[Rule, ...] = ("point", "ci")
_OPS: dict[str, Any] = {
    "<": lambda v, t: v < t,
    ">": lambda v, t: v > t,
    "<=": lambda v, t: v <= t,
    ">=": lambda v, t: v >= t,
}

#: FID above this is the seed's failure mode "FID too high".
FID_FAILURE = 30.0
#: ITA distributions real vs synthetic differ when the two-sample KS statistic exceeds this
#: with p below ``SHIFT_P``.
SHIFT_KS = 0.2
SHIFT_P = 0.01


@dataclass(frozen=True)
class TargetSpec:
    """One target of the seed: ``value <op> threshold``.

    ``min_n`` is the fewest observations (images, or synthetic cases for reader targets)
    a value needs before it may count; below it the value is "not comparable".
    """

    key: str
    label: str
    op: Op
    threshold: float
    definition: str
    fmt: str = "{:.3g}"
    min_n: int = 0

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"op: {self.op!r} is not one of {', '.join(_OPS)}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold: {self.threshold!r} is not a finite number")
        if self.min_n < 0:
            raise ValueError(f"min_n: {self.min_n} is negative")

    def meets(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))

    def format(self, value: float | None) -> str:
        return "–" if value is None else self.fmt.format(value)

    @property
    def text(self) -> str:
        """The target as a line, e.g. ``< 20``."""
        return f"{self.op} {self.format(self.threshold)}"


DEFAULT_TARGETS: tuple[TargetSpec, ...] = (
    TargetSpec(
        "fid",
        "FID",
        "<",
        20.0,
        "Fréchet Inception Distance between the synthetic set and the real reference split, "
        "on pytorch-fid's InceptionV3 2048-d pool features (official weights). Lower is closer. "
        "Biased upwards below 2048 images per side, so fewer are not comparable.",
        "{:.2f}",
        2048,
    ),
    TargetSpec(
        "lpips",
        "LPIPS to nearest real",
        "<",
        0.1,
        "LPIPS (lpips package, AlexNet trunk, v0.1 linear heads) from each synthetic image to "
        "its nearest real image, averaged over the synthetic set: a fidelity distance, lower "
        "is closer.",
        "{:.3f}",
        100,
    ),
    TargetSpec(
        "is",
        "Inception Score",
        ">",
        5.0,
        "Inception Score of the synthetic set, pytorch-fid's InceptionV3, 10 splits, mean.",
        "{:.2f}",
        2048,
    ),
    TargetSpec(
        "realism",
        "Expert realism of synthetic images",
        ">",
        5.0,
        "Mean realism score (1-7) dermatologists gave the synthetic cases of a closed blinded "
        "study, with a t-interval over their readings.",
        "{:.2f}",
        50,
    ),
    TargetSpec(
        "indistinguishable",
        "Synthetic images indistinguishable",
        ">",
        0.6,
        "Share of the synthetic cases that a strict majority of the readers who judged them "
        "called real, in a closed blinded study; Wilson CI over images.",
        "{:.0%}",
        50,
    ),
    TargetSpec(
        "tone_fidelity",
        "FST fidelity within one type",
        ">",
        0.9,
        "Share of synthetic images whose skin type estimated from ITA (Individual Typology "
        "Angle) of the skin around the lesion is within one type of the requested FST.",
        "{:.0%}",
        100,
    ),
    TargetSpec(
        "auroc_v_vi",
        "FST V-VI AUROC improvement",
        ">=",
        0.10,
        "(AUROC_augmented(V-VI) - AUROC_baseline(V-VI)) / AUROC_baseline(V-VI) on the locked "
        "real test set, AUROCs averaged over training seeds; CI by paired bootstrap.",
        "{:+.1%}",
    ),
    TargetSpec(
        "auroc_i_iii",
        "FST I-III AUROC change",
        ">",
        -0.02,
        "(AUROC_augmented(I-III) - AUROC_baseline(I-III)) / AUROC_baseline(I-III), same "
        "estimator and CI: the light skin types may lose less than 2 %.",
        "{:+.1%}",
    ),
    TargetSpec(
        "set_size",
        "Synthetic set size",
        ">=",
        60000,
        "Number of images in the synthetic set the other targets were measured on.",
        "{:,.0f}",
    ),
    TargetSpec(
        "memorized",
        "Memorized images",
        "<=",
        0,
        "Synthetic images the memorization audit flags as near copies of a training image "
        "(LPIPS or pixel distance below the audit's thresholds).",
        "{:.0f}",
    ),
)
TARGET_KEYS = tuple(spec.key for spec in DEFAULT_TARGETS)


@dataclass(frozen=True)
class TargetSettings:
    """A project's choice of targets: threshold and ``min_n`` overrides, targets turned off,
    and the decision rule (``point``: the value decides; ``ci``: the whole CI must meet the
    threshold, and a CI across it is pending)."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    min_n: Mapping[str, int] = field(default_factory=dict)
    disabled: frozenset[str] = frozenset()
    rule: Rule = "point"

    def __post_init__(self) -> None:
        for name, mapping in (("thresholds", self.thresholds), ("min_n", self.min_n)):
            for key, value in mapping.items():
                if key not in TARGET_KEYS:
                    raise ValueError(f"{name}: unknown target {key!r}")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{name}[{key!r}]: {value!r} is not a number")
                if not math.isfinite(value):
                    raise ValueError(f"{name}[{key!r}]: {value!r} is not finite")
                if name == "min_n" and (value < 0 or value != int(value)):
                    raise ValueError(f"min_n[{key!r}]: {value!r} is not a whole number >= 0")
        unknown = set(self.disabled) - set(TARGET_KEYS)
        if unknown:
            raise ValueError(f"disabled: unknown target(s) {', '.join(sorted(unknown))}")
        if self.rule not in RULES:
            raise ValueError(f"rule: {self.rule!r} is not one of {', '.join(RULES)}")
        object.__setattr__(self, "disabled", frozenset(self.disabled))

    def specs(self) -> list[TargetSpec]:
        """The enabled targets with this project's thresholds."""
        return [
            replace(
                spec,
                threshold=float(self.thresholds.get(spec.key, spec.threshold)),
                min_n=int(self.min_n.get(spec.key, spec.min_n)),
            )
            for spec in DEFAULT_TARGETS
            if spec.key not in self.disabled
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": dict(self.thresholds),
            "min_n": dict(self.min_n),
            "disabled": sorted(self.disabled),
            "rule": self.rule,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TargetSettings:
        data = dict(data or {})
        unknown = set(data) - {"thresholds", "min_n", "disabled", "rule"}
        if unknown:
            raise ValueError(f"targets: unknown setting(s) {', '.join(sorted(unknown))}")
        return cls(
            thresholds=dict(data.get("thresholds") or {}),
            min_n=dict(data.get("min_n") or {}),
            disabled=frozenset(data.get("disabled") or ()),
            rule=data.get("rule", "point"),
        )


@dataclass(frozen=True)
class Evidence:
    """What was measured for one target, and where it came from.

    ``value`` None means nothing is measured yet (``pending`` says why). ``caveats`` are
    the reasons the value may not count towards a literature target (non-official weights,
    phantom data, simulated readers...); ``min_n`` checks are added by ``assess``.
    """

    key: str
    value: float | None
    source: str = ""
    url: str = ""
    date: str = ""
    ci: tuple[float, float] | None = None
    n: int | None = None
    caveats: tuple[str, ...] = ()
    pending: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.key not in TARGET_KEYS:
            raise ValueError(f"key: unknown target {self.key!r}")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"value: {self.value!r} is not finite")
        if self.ci is not None:
            if len(self.ci) != 2 or None in self.ci:
                raise ValueError(f"ci: {self.ci!r} is not a (low, high) pair")
            object.__setattr__(self, "ci", (float(self.ci[0]), float(self.ci[1])))
        object.__setattr__(self, "caveats", tuple(self.caveats))


@dataclass(frozen=True)
class TargetResult:
    spec: TargetSpec
    evidence: Evidence | None
    status: Status
    reason: str

    def to_dict(self) -> dict[str, Any]:
        e = self.evidence
        return {
            "key": self.spec.key,
            "label": self.spec.label,
            "definition": self.spec.definition,
            "target": self.spec.text,
            "op": self.spec.op,
            "threshold": self.spec.threshold,
            "min_n": self.spec.min_n,
            "status": self.status,
            "reason": self.reason,
            "value": None if e is None else e.value,
            "value_text": self.spec.format(None if e is None else e.value),
            "ci": None if e is None or e.ci is None else list(e.ci),
            "ci_text": ""
            if e is None or e.ci is None
            else f"[{self.spec.format(e.ci[0])}, {self.spec.format(e.ci[1])}]",
            "n": None if e is None else e.n,
            "source": "" if e is None else e.source,
            "url": "" if e is None else e.url,
            "date": "" if e is None else e.date,
            "detail": "" if e is None else e.detail,
            "caveats": [] if e is None else list(e.caveats),
        }


def assess(spec: TargetSpec, evidence: Evidence | None, rule: Rule = "point") -> TargetResult:
    """Judge one target on its evidence (see the module docstring for the four states)."""
    if rule not in RULES:
        raise ValueError(f"rule: {rule!r} is not one of {', '.join(RULES)}")
    if evidence is not None and evidence.key != spec.key:
        raise ValueError(f"evidence: is for {evidence.key!r}, not {spec.key!r}")
    if evidence is None or evidence.value is None:
        why = evidence.pending if evidence is not None and evidence.pending else "no evidence yet"
        return TargetResult(spec, evidence, "pending", why)
    caveats = list(evidence.caveats)
    if spec.min_n and (evidence.n is None or evidence.n < spec.min_n):
        caveats.append(f"n = {evidence.n or 0}, fewer than the {spec.min_n} the target needs")
    if caveats:
        return TargetResult(spec, evidence, "not comparable", "; ".join(caveats))
    value_text = f"{spec.format(evidence.value)} {spec.text}"
    if rule == "ci" and evidence.ci is not None:
        low, high = evidence.ci
        inside = [spec.meets(low), spec.meets(high)]
        if all(inside):
            return TargetResult(spec, evidence, "pass", f"the whole CI meets {spec.text}")
        if not spec.meets(evidence.value):
            return TargetResult(
                spec, evidence, "fail", f"{spec.format(evidence.value)} misses {spec.text}"
            )
        return TargetResult(
            spec, evidence, "pending", f"the CI straddles {spec.text}: more data needed"
        )
    if spec.meets(evidence.value):
        return TargetResult(spec, evidence, "pass", f"{value_text}: met")
    return TargetResult(spec, evidence, "fail", f"{spec.format(evidence.value)} misses {spec.text}")


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]
    counts: Mapping[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": list(self.reasons), "counts": dict(self.counts)}


def decide(results: Sequence[TargetResult]) -> Decision:
    """NO-GO if a target fails, GO if all pass, INCOMPLETE otherwise; with the reasons."""
    if not results:
        return Decision("INCOMPLETE", ("no target is enabled",), dict.fromkeys(STATUSES, 0))
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    failed = [r for r in results if r.status == "fail"]
    if failed:
        return Decision("NO-GO", tuple(f"{r.spec.label}: {r.reason}" for r in failed), counts)
    open_ = [r for r in results if r.status != "pass"]
    if open_:
        return Decision(
            "INCOMPLETE", tuple(f"{r.spec.label} is {r.status}: {r.reason}" for r in open_), counts
        )
    return Decision("GO", ("every enabled target passes",), counts)


def judge(
    settings: TargetSettings, evidence: Iterable[Evidence]
) -> tuple[list[TargetResult], Decision]:
    """Assess every enabled target on the evidence given for it, then decide."""
    by_key = {e.key: e for e in evidence}
    results = [assess(spec, by_key.get(spec.key), settings.rule) for spec in settings.specs()]
    return results, decide(results)


# --- failure modes -------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureMode:
    name: str
    description: str
    triggered: bool
    evidence: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "triggered": self.triggered,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class FailureInputs:
    """What the failure-mode checks read; every field is optional (None: not measured)."""

    fid: float | None = None
    fid_label: str = ""
    ita_real: Sequence[float] = ()
    ita_synthetic: Sequence[float] = ()
    tone_within_one: float | None = None
    diversity_alarms: Sequence[str] = ()
    #: The primary arm's paired difference on all test images: {"relative", "relative_ci"}.
    auroc_all: Mapping[str, Any] | None = None
    #: The I-III target's result, if failed it is evidence of overfitting too.
    auroc_i_iii_failed: bool = False
    #: Pooled reader accuracy: {"value", "ci", "p_value"}.
    reader_accuracy: Mapping[str, Any] | None = None
    memorized: int | None = None


def failure_modes(inputs: FailureInputs) -> list[FailureMode]:
    """The seed's three failure modes, each with the evidence lines that triggered it."""
    modes = []
    fid_lines = []
    if inputs.fid is not None and inputs.fid > FID_FAILURE:
        fid_lines.append(
            f"FID {inputs.fid:.2f} > {FID_FAILURE:.0f}"
            + (f" ({inputs.fid_label})" if inputs.fid_label else "")
        )
    modes.append(
        FailureMode(
            "FID too high",
            f"FID above {FID_FAILURE:.0f}: the synthetic images are far from the real ones.",
            bool(fid_lines),
            tuple(fid_lines),
        )
    )

    shift = []
    if len(inputs.ita_real) >= 2 and len(inputs.ita_synthetic) >= 2:
        test = ks_2samp(list(inputs.ita_real), list(inputs.ita_synthetic))
        if test.statistic > SHIFT_KS and test.pvalue < SHIFT_P:
            shift.append(
                f"ITA distributions differ: KS D = {test.statistic:.2f}, p = {test.pvalue:.2g} "
                f"(n = {len(inputs.ita_real)} real, {len(inputs.ita_synthetic)} synthetic)"
            )
    if inputs.tone_within_one is not None and inputs.tone_within_one < 0.9:
        shift.append(
            f"only {inputs.tone_within_one:.0%} of synthetic images are within one type of "
            "their requested FST"
        )
    shift.extend(f"mode collapse: {alarm}" for alarm in inputs.diversity_alarms)
    modes.append(
        FailureMode(
            "Distribution shift",
            "The synthetic images differ from the real ones in skin tone or variety "
            f"(ITA KS D > {SHIFT_KS} with p < {SHIFT_P}, tone fidelity < 90 %, or a "
            "mode-collapse alarm).",
            bool(shift),
            tuple(shift),
        )
    )

    overfit = []
    diff = inputs.auroc_all
    if diff and diff.get("relative") is not None:
        ci = diff.get("relative_ci") or [None, None]
        if ci[1] is not None and ci[1] < 0:
            overfit.append(
                f"the augmented classifier is worse on all real test images: "
                f"{diff['relative']:+.1%} [{ci[0]:+.1%}, {ci[1]:+.1%}]"
            )
    if inputs.auroc_i_iii_failed:
        overfit.append("FST I-III AUROC dropped by more than the target allows")
    acc = inputs.reader_accuracy
    if acc and acc.get("value") is not None and acc.get("p_value") is not None:
        if acc["value"] > 0.5 and acc["p_value"] < 0.05:
            overfit.append(
                f"readers tell synthetic from real above chance: accuracy {acc['value']:.0%}, "
                f"p = {acc['p_value']:.2g} (visible artifacts)"
            )
    if inputs.memorized:
        overfit.append(f"{inputs.memorized} synthetic image(s) are near copies of training images")
    modes.append(
        FailureMode(
            "Overfitting to synthetic artifacts",
            "Training on synthetic images hurts on real ones, or the images carry artifacts "
            "readers can spot, or copies of training images.",
            bool(overfit),
            tuple(overfit),
        )
    )
    return modes


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of the mean of ``values`` (None below two values or zero spread)."""
    import numpy as np
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence} is not in (0, 1)")
    data = np.asarray(list(values), dtype=float)
    if data.size < 2:
        return None
    sem = stats.sem(data)
    if sem == 0:
        return (float(data.mean()), float(data.mean()))
    low, high = stats.t.interval(confidence, data.size - 1, loc=data.mean(), scale=sem)
    return (float(low), float(high))

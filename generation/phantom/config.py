"""``PhantomConfig``: what a phantom dataset contains, validated and JSON round-trippable."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from validation.checks import check_float as _check_float
from validation.checks import check_int as _check_int
from validation.vocabulary import FST, diagnosis

#: Bumped whenever a change to the generator changes the pixels or the ground truth of any
#: image; written to ``phantom_config.json`` so that cached datasets can be told apart.
PHANTOM_VERSION = 1

#: Diagnoses the phantom can draw (codes of ``validation.vocabulary.DIAGNOSES``).
SUPPORTED_DIAGNOSES: tuple[str, ...] = ("nevus", "melanoma", "bcc", "seborrheic_keratosis")

#: Skewed like public dermoscopy sets: FST V and VI together hold 4.5 % of the images.
DEFAULT_FST_MIX: dict[int, float] = {1: 0.15, 2: 0.35, 3: 0.28, 4: 0.175, 5: 0.03, 6: 0.015}

#: Nevus-heavy like public dermoscopy sets.
DEFAULT_DIAGNOSIS_MIX: dict[str, float] = {
    "nevus": 0.55,
    "melanoma": 0.15,
    "bcc": 0.15,
    "seborrheic_keratosis": 0.15,
}

MAX_COUNT = 1_000_000
MAX_SEED = 2**63 - 1
#: Smallest non-zero share of a category in a mix (keeps the stable allocation fast).
MIN_WEIGHT = 0.001


def _normalise_weights(name: str, weights: dict[Any, float]) -> dict[Any, float]:
    total = math.fsum(weights.values())
    if total <= 0:
        raise ValueError(f"{name}: weights must not all be zero")
    for key, value in weights.items():
        if 0 < value / total < MIN_WEIGHT:
            raise ValueError(
                f"{name}: weight of {key!r} is {value / total:.2g} of the total; "
                f"use 0 or at least {MIN_WEIGHT:g}"
            )
    if math.isclose(total, 1.0, rel_tol=0.0, abs_tol=1e-9):
        return dict(weights)  # already normalised: keep the values, so round trips are exact
    return {key: value / total for key, value in weights.items()}


def _check_weight(name: str, key: object, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: weight of {key!r} must be a number, got {value!r}")
    weight = float(value)
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{name}: weight of {key!r} must be finite and >= 0, got {value!r}")
    return weight


def normalise_fst_mix(mix: Mapping[Any, Any], name: str = "fst_mix") -> dict[int, float]:
    """Validate and normalise a skin-type mix.

    Args:
        mix: Mapping from a skin type (``1``-``6``, ``"1"``-``"6"``, ``"I"``-``"VI"`` or a
            ``FST``) to a non-negative weight. Missing types get weight 0.
        name: Field name used in error messages.

    Returns:
        ``{1: w1, ..., 6: w6}`` with weights summing to 1.
    """
    if not isinstance(mix, Mapping):
        raise ValueError(f"{name}: must be a mapping of skin type to weight, got {mix!r}")
    weights = {int(fst): 0.0 for fst in FST}
    seen: set[int] = set()
    for key, value in mix.items():
        try:
            fst = int(FST.parse(key))
        except ValueError:
            raise ValueError(
                f"{name}: {key!r} is not a Fitzpatrick skin type (1-6 or I-VI)"
            ) from None
        if fst in seen:
            raise ValueError(f"{name}: skin type {FST(fst).roman} is given twice")
        seen.add(fst)
        weights[fst] = _check_weight(name, key, value)
    return _normalise_weights(name, weights)


def normalise_diagnosis_mix(
    mix: Mapping[Any, Any], name: str = "diagnosis_mix"
) -> dict[str, float]:
    """Validate and normalise a diagnosis mix.

    Args:
        mix: Mapping from a shared diagnosis code (see ``SUPPORTED_DIAGNOSES``) to a
            non-negative weight. Missing diagnoses get weight 0.
        name: Field name used in error messages.

    Returns:
        One weight per supported diagnosis, in ``SUPPORTED_DIAGNOSES`` order, summing to 1.
    """
    if not isinstance(mix, Mapping):
        raise ValueError(f"{name}: must be a mapping of diagnosis code to weight, got {mix!r}")
    weights = dict.fromkeys(SUPPORTED_DIAGNOSES, 0.0)
    for key, value in mix.items():
        code = str(key).strip()
        try:
            diagnosis(code)
        except ValueError:
            raise ValueError(
                f"{name}: unknown diagnosis code {code!r} "
                f"(supported: {', '.join(SUPPORTED_DIAGNOSES)})"
            ) from None
        if code not in weights:
            raise ValueError(
                f"{name}: the phantom cannot draw {code!r} "
                f"(supported: {', '.join(SUPPORTED_DIAGNOSES)})"
            )
        weights[code] = _check_weight(name, key, value)
    return _normalise_weights(name, weights)


def parse_mix_text(text: str, name: str) -> dict[str, float]:
    """Parse ``"key:weight,key:weight"`` (as given on the command line) into a dict.

    Args:
        text: Comma-separated ``key:weight`` pairs, e.g. ``"1:0.15,2:0.35"``.
        name: Name used in error messages (an option or field name).

    Returns:
        The pairs as a dict of stripped keys to floats (not yet validated or normalised).
    """
    pairs: dict[str, float] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"{name}: expected key:weight pairs separated by commas, got {item!r}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(
                f"{name}: weight of {key.strip()!r} is not a number: {value!r}"
            ) from None
        if key.strip() in pairs:
            raise ValueError(f"{name}: {key.strip()!r} is given twice")
        pairs[key.strip()] = weight
    if not pairs:
        raise ValueError(f"{name}: no key:weight pairs in {text!r}")
    return pairs


@dataclass(frozen=True)
class PhantomConfig:
    """Everything that determines a phantom dataset; the same config gives the same bytes.

    Args:
        count: Number of images (1 to 1,000,000).
        image_size: Side of the square images in pixels (32 to 512).
        seed: Non-negative integer seed; image ``i`` depends only on ``seed``, ``i`` and the
            images before it, never on ``count``.
        fst_mix: Weight per Fitzpatrick skin type (keys 1-6 or I-VI); normalised. The
            default is skewed like public data (FST V+VI 4.5 %).
        diagnosis_mix: Weight per supported diagnosis code; normalised. Nevus-heavy by
            default.
        hair_probability: Probability that an image shows hair (0 to 1).
        max_hairs: Most hair strands in one image (1 to 40).
        max_images_per_lesion: Most images of one lesion (1 to 5). Re-shots of a lesion show
            it slightly rotated, shifted and lit differently, with the same ``lesion_id`` and
            ``patient_id``.
        multi_image_probability: Probability that a new lesion is photographed more than
            once (when ``max_images_per_lesion`` > 1).
        max_lesions_per_patient: Most lesions of one patient (1 to 5).
        multi_lesion_probability: Probability that a new patient has more than one lesion
            (when ``max_lesions_per_patient`` > 1).
        field_of_view_mm: Width of the image in millimetres (5 to 50); converts lesion
            diameters between millimetres and pixels.
        supersample: Render at this multiple of ``image_size`` and box-downsample (1 to 4).
    """

    count: int = 1000
    image_size: int = 64
    seed: int = 0
    fst_mix: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_FST_MIX))
    diagnosis_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_DIAGNOSIS_MIX))
    hair_probability: float = 0.4
    max_hairs: int = 10
    max_images_per_lesion: int = 3
    multi_image_probability: float = 0.25
    max_lesions_per_patient: int = 3
    multi_lesion_probability: float = 0.2
    field_of_view_mm: float = 16.0
    supersample: int = 2

    def __post_init__(self) -> None:
        checked: dict[str, Any] = {
            "count": _check_int("count", self.count, 1, MAX_COUNT),
            "image_size": _check_int("image_size", self.image_size, 32, 512),
            "seed": _check_int("seed", self.seed, 0, MAX_SEED),
            "fst_mix": normalise_fst_mix(self.fst_mix),
            "diagnosis_mix": normalise_diagnosis_mix(self.diagnosis_mix),
            "hair_probability": _check_float("hair_probability", self.hair_probability, 0, 1),
            "max_hairs": _check_int("max_hairs", self.max_hairs, 1, 40),
            "max_images_per_lesion": _check_int(
                "max_images_per_lesion", self.max_images_per_lesion, 1, 5
            ),
            "multi_image_probability": _check_float(
                "multi_image_probability", self.multi_image_probability, 0, 1
            ),
            "max_lesions_per_patient": _check_int(
                "max_lesions_per_patient", self.max_lesions_per_patient, 1, 5
            ),
            "multi_lesion_probability": _check_float(
                "multi_lesion_probability", self.multi_lesion_probability, 0, 1
            ),
            "field_of_view_mm": _check_float("field_of_view_mm", self.field_of_view_mm, 5, 50),
            "supersample": _check_int("supersample", self.supersample, 1, 4),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def mm_per_pixel(self) -> float:
        """Millimetres per output pixel."""
        return self.field_of_view_mm / self.image_size

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (mix keys as strings) that ``from_dict`` turns back into ``self``."""
        data: dict[str, Any] = {"phantom_version": PHANTOM_VERSION}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "fst_mix":
                value = {str(key): weight for key, weight in value.items()}
            elif spec.name == "diagnosis_mix":
                value = dict(value)
            data[spec.name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PhantomConfig:
        """Build a config from ``to_dict`` output (e.g. a loaded ``phantom_config.json``).

        Args:
            data: Field values by name. Missing fields take their defaults; unknown fields
                raise ``ValueError``. ``phantom_version`` is accepted and ignored (images are
                only reproducible with the generator version that wrote them).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"config: expected a mapping, got {type(data).__name__}")
        known = {spec.name for spec in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "phantom_version":
                continue
            if key not in known:
                raise ValueError(f"{key}: unknown phantom config field")
            values[key] = value
        return cls(**values)

"""Per-image ground truth (``PhantomSpec``) and the dataset plan that samples it.

The plan walks images 0, 1, 2, ... in order. Image ``i``'s skin type and diagnosis come from
``stable_allocation`` (exact counts up to rounding for every prefix); its lesion and patient
come from a first-come grouping that only looks at earlier images; everything random is
drawn from generators seeded with ``(config.seed, index, purpose)``. So image ``i`` is the
same whatever ``count`` is.

Lesion contrast falls on darker skin, as in life. Every colour the lesion adds to the skin
(its CIELAB difference from the skin, for body colours and fine structures alike) is scaled
by::

    contrast(FST) = 1 - 0.11 * (FST - 1)     # I: 1.00, II: 0.89, III: 0.78, IV: 0.67,
                                              # V: 0.56, VI: 0.45

so a classifier that learned lesions mostly on light skin sees fainter versions of them on
dark skin. Hair is not scaled (it is not part of the lesion). The renderer adds two more
properties of real dark skin that make lesions harder to read on it: uneven, blotchy
background pigmentation that grows with the skin type, and a faint physiological pigment
network on FST IV-VI (see ``render.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from generation.phantom.allocation import stable_allocation
from generation.phantom.config import SUPPORTED_DIAGNOSES, PhantomConfig
from validation.skin import DEFAULT_THRESHOLDS, ita_degrees
from validation.vocabulary import FST, diagnosis

#: The six dermoscopic colours, in the order used for CSV lists.
COLOURS: tuple[str, ...] = ("white", "red", "light_brown", "dark_brown", "blue_grey", "black")

#: Dermoscopic structures the phantom can draw, in the order used for CSV lists.
STRUCTURES: tuple[str, ...] = (
    "pigment_network",
    "atypical_network",
    "dots_globules",
    "irregular_dots_globules",
    "structureless",
    "streaks",
    "blotch",
    "blue_white_veil",
    "regression",
    "dotted_vessels",
    "arborizing_vessels",
    "ovoid_nests",
    "shiny_white_areas",
    "leaf_like_areas",
    "ulceration",
    "milia_like_cysts",
    "comedo_like_openings",
    "fissures_ridges",
)

#: Margin (degrees) kept between a drawn skin ITA and the edges of its FST's ITA bin.
ITA_MARGIN_DEG = 4.0
#: Drawn skin ITA never goes beyond these (FST I and VI bins are open-ended).
ITA_LIMITS_DEG = (-58.0, 72.0)
#: Plausible skin b* per skin type (darker skin is more saturated) and L* range.
SKIN_B_RANGES: dict[int, tuple[float, float]] = {
    1: (9.0, 16.0),
    2: (11.0, 18.0),
    3: (12.0, 19.0),
    4: (13.0, 20.0),
    5: (14.0, 22.0),
    6: (14.0, 22.0),
}
SKIN_L_RANGE = (25.0, 85.0)
#: Skin a* range at FST I; it moves up by ``SKIN_A_STEP`` per type (darker skin is redder).
SKIN_A_RANGE = (5.0, 11.0)
SKIN_A_STEP = 0.8


def contrast_factor(fst: FST | int) -> float:
    """Lesion contrast on a skin type: ``1 - 0.11 * (FST - 1)`` (1.0 at I, 0.45 at VI).

    Args:
        fst: Fitzpatrick skin type 1-6.

    Returns:
        The factor every lesion colour difference from the skin is multiplied by.
    """
    return 1.0 - 0.11 * (int(FST(fst)) - 1)


@dataclass(frozen=True)
class _Profile:
    asymmetry_p: tuple[float, float, float]
    border_p: float
    diameter_median_mm: float
    diameter_sigma: float


_PROFILES: dict[str, _Profile] = {
    "nevus": _Profile((0.5, 0.35, 0.15), 0.15, 5.0, 0.3),
    "melanoma": _Profile((0.1, 0.3, 0.6), 0.5, 7.5, 0.3),
    "bcc": _Profile((0.3, 0.45, 0.25), 0.3, 6.0, 0.3),
    "seborrheic_keratosis": _Profile((0.3, 0.4, 0.3), 0.45, 7.0, 0.3),
}


@dataclass(frozen=True)
class PhantomSpec:
    """Ground truth and render parameters of one phantom image.

    ``render_phantom(spec)`` draws the image. The lesion itself (shape, colour regions,
    structures) is drawn from ``lesion_seed``, shared by all images of the lesion; noise,
    lighting and hair come from ``image_seed``.

    Attributes:
        index: Position in the dataset; ``image_id`` is derived from it and the seed.
        lesion_id, patient_id: Shared by re-shots of a lesion / the lesions of a patient.
        shot: 0 for a lesion's first image, 1, 2, ... for re-shots.
        fst, ita, skin_lab: Skin type, and the skin colour (CIELAB) and its ITA in degrees;
            the median ITA over the rendered skin mask equals ``ita`` (within ~0.5 degree).
        diagnosis: Shared diagnosis code; ``malignant`` follows the vocabulary.
        asymmetry_axes: Stolz A, 0-2 axes of asymmetry (shape and colour distribution).
        irregular_segments: Which of the 8 border segments (45 degrees each, in the lesion
            frame) end abruptly with a jagged edge; ``border_segments`` counts them (Stolz B).
        colours: The dermoscopic colours drawn (``COLOURS`` order).
        structures: The dermoscopic structures drawn (``STRUCTURES`` order).
        diameter_mm: Largest diameter (Feret) of the outline.
        hair_count: Number of hair strands drawn.
        image_size, field_of_view_mm, supersample: Copied from the config.
        lesion_offset_mm, lesion_rotation_deg: Where the lesion centre lies (from the image
            centre, x right, y down) and how it is turned.
        lesion_seed, image_seed: Seed sequences of the lesion and of this image.
    """

    index: int
    image_id: str
    lesion_id: str
    patient_id: str
    shot: int
    fst: int
    ita: float
    skin_lab: tuple[float, float, float]
    diagnosis: str
    asymmetry_axes: int
    irregular_segments: tuple[int, ...]
    colours: tuple[str, ...]
    structures: tuple[str, ...]
    diameter_mm: float
    hair_count: int
    image_size: int
    field_of_view_mm: float
    supersample: int
    lesion_offset_mm: tuple[float, float]
    lesion_rotation_deg: float
    lesion_seed: tuple[int, ...]
    image_seed: tuple[int, ...]

    @property
    def malignant(self) -> bool:
        """Whether the diagnosis is malignant (from the shared vocabulary)."""
        return bool(diagnosis(self.diagnosis).malignant)

    @property
    def border_segments(self) -> int:
        """Number of the 8 border segments with an abrupt, irregular edge (Stolz B)."""
        return len(self.irregular_segments)

    @property
    def n_colours(self) -> int:
        """Number of dermoscopic colours drawn (Stolz C)."""
        return len(self.colours)

    @property
    def contrast(self) -> float:
        """The lesion contrast factor of this image's skin type (see ``contrast_factor``)."""
        return contrast_factor(self.fst)

    @property
    def mm_per_pixel(self) -> float:
        """Millimetres per output pixel."""
        return self.field_of_view_mm / self.image_size


def sample_skin_lab(rng: np.random.Generator, fst: FST | int) -> tuple[float, float, float]:
    """Draw a skin colour in CIELAB whose ITA lies inside ``fst``'s ITA bin, with a margin.

    ITA is drawn uniformly from the bin (``DEFAULT_THRESHOLDS.ita_range``) shrunk by
    ``ITA_MARGIN_DEG`` on both sides and clipped to ``ITA_LIMITS_DEG``; b* from the type's
    ``SKIN_B_RANGES`` entry (narrowed so that L* stays in ``SKIN_L_RANGE``); then
    ``L* = 50 + b* * tan(ITA)``; a* from ``SKIN_A_RANGE`` shifted by ``SKIN_A_STEP`` per type.

    Args:
        rng: Random generator to draw from.
        fst: The skin type.

    Returns:
        ``(L*, a*, b*)``.
    """
    low, high = DEFAULT_THRESHOLDS.ita_range(fst)
    low = max(low, ITA_LIMITS_DEG[0]) + ITA_MARGIN_DEG
    high = min(high, ITA_LIMITS_DEG[1]) - ITA_MARGIN_DEG
    ita = rng.uniform(low, high)
    slope = math.tan(math.radians(ita))
    b_low, b_high = SKIN_B_RANGES[int(FST(fst))]
    if slope > 0:
        b_high = min(b_high, (SKIN_L_RANGE[1] - 50.0) / slope)
    elif slope < 0:
        b_high = min(b_high, (50.0 - SKIN_L_RANGE[0]) / -slope)
    b_star = rng.uniform(b_low, max(b_low, b_high))
    lightness = 50.0 + b_star * slope
    a_step = SKIN_A_STEP * (int(FST(fst)) - 1)
    a_star = rng.uniform(SKIN_A_RANGE[0] + a_step, SKIN_A_RANGE[1] + a_step)
    return float(lightness), float(a_star), float(b_star)


def _pick(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _sample_colours_and_structures(
    rng: np.random.Generator, code: str, border_segments: int
) -> tuple[set[str], set[str]]:
    colours: set[str] = set()
    structures: set[str] = set()
    if code == "nevus":
        r = rng.random()
        if r < 0.35:
            colours = {"light_brown"}
        elif r < 0.6:
            colours = {"dark_brown"}
        else:
            colours = {"light_brown", "dark_brown"}
        if _pick(rng, 0.55):
            structures.add("pigment_network")
        if _pick(rng, 0.45):
            structures.add("dots_globules")
        if not structures or _pick(rng, 0.2):
            structures.add("structureless")
    elif code == "melanoma":
        n = int(rng.choice([3, 4, 5], p=[0.45, 0.35, 0.2]))
        colours = {"dark_brown"}
        if _pick(rng, 0.85):
            colours.add("light_brown")
        pool = ["black", "blue_grey", "white", "red"]
        weights = np.array([0.35, 0.35, 0.2, 0.1])
        extra = min(n - len(colours), len(pool))
        chosen = rng.choice(len(pool), size=extra, replace=False, p=weights / weights.sum())
        colours.update(pool[int(k)] for k in chosen)
        if _pick(rng, 0.6):
            structures.add("atypical_network")
        if _pick(rng, 0.55):
            structures.add("irregular_dots_globules")
        if border_segments >= 2 and _pick(rng, 0.5):
            structures.add("streaks")
        if "black" in colours:
            if _pick(rng, 0.7):
                structures.add("blotch")
            else:
                structures.add("irregular_dots_globules")
        if "white" in colours:
            structures.add("regression")
        if "blue_grey" in colours:
            if "white" in colours and _pick(rng, 0.6):
                structures.add("blue_white_veil")
            else:
                structures.add("structureless")
        if "red" in colours:
            structures.add("dotted_vessels")
        if not structures & {"atypical_network", "irregular_dots_globules", "streaks"}:
            structures.add("atypical_network")
    elif code == "bcc":
        colours = {"red"}
        if _pick(rng, 0.7):
            colours.add("blue_grey")
        if _pick(rng, 0.65):
            colours.add("white")
        if _pick(rng, 0.25):
            colours.add("light_brown")
        if _pick(rng, 0.2):
            colours.add("dark_brown")
        if len(colours) < 2:
            colours.add("blue_grey" if _pick(rng, 0.5) else "white")
        structures.add("arborizing_vessels")
        if "blue_grey" in colours:
            structures.add("ovoid_nests")
        if "white" in colours:
            structures.add("shiny_white_areas")
        if colours & {"light_brown", "dark_brown"}:
            structures.add("leaf_like_areas")
        if "dark_brown" in colours and _pick(rng, 0.4):
            structures.add("ulceration")
    elif code == "seborrheic_keratosis":
        if _pick(rng, 0.9):
            colours.add("light_brown")
        if _pick(rng, 0.75):
            colours.add("dark_brown")
        if _pick(rng, 0.8):
            colours.add("white")
        if _pick(rng, 0.35):
            colours.add("black")
        if not colours & {"light_brown", "dark_brown"}:
            colours.add("light_brown")
        if len(colours) < 2:
            colours.add("dark_brown" if "light_brown" in colours else "light_brown")
        if "white" in colours:
            structures.add("milia_like_cysts")
        if "black" in colours or ("dark_brown" in colours and _pick(rng, 0.6)):
            structures.add("comedo_like_openings")
        if "dark_brown" in colours and _pick(rng, 0.6):
            structures.add("fissures_ridges")
        if not structures:
            structures.add("comedo_like_openings" if "dark_brown" in colours else "structureless")
    else:  # pragma: no cover - config validation only lets supported codes through
        raise ValueError(f"diagnosis: the phantom cannot draw {code!r}")
    return colours, structures


@dataclass(frozen=True)
class _LesionTraits:
    asymmetry_axes: int
    irregular_segments: tuple[int, ...]
    colours: tuple[str, ...]
    structures: tuple[str, ...]
    diameter_mm: float
    offset_mm: tuple[float, float]
    rotation_deg: float


def _sample_lesion_traits(
    rng: np.random.Generator, code: str, field_of_view_mm: float
) -> _LesionTraits:
    profile = _PROFILES[code]
    asymmetry = int(rng.choice(3, p=profile.asymmetry_p))
    n_irregular = int(rng.binomial(8, profile.border_p))
    segments = tuple(sorted(int(s) for s in rng.choice(8, size=n_irregular, replace=False)))
    colours, structures = _sample_colours_and_structures(rng, code, n_irregular)
    diameter = profile.diameter_median_mm * math.exp(profile.diameter_sigma * rng.standard_normal())
    diameter = float(np.clip(diameter, min(2.0, 0.3 * field_of_view_mm), 0.8 * field_of_view_mm))
    reach = min(0.12 * field_of_view_mm, max(0.0, 0.42 * field_of_view_mm - diameter / 2))
    angle = rng.uniform(0, 2 * math.pi)
    radius = reach * math.sqrt(rng.random())
    return _LesionTraits(
        asymmetry_axes=asymmetry,
        irregular_segments=segments,
        colours=tuple(c for c in COLOURS if c in colours),
        structures=tuple(s for s in STRUCTURES if s in structures),
        diameter_mm=round(diameter, 3),
        offset_mm=(radius * math.cos(angle), radius * math.sin(angle)),
        rotation_deg=float(rng.uniform(0, 360)),
    )


@dataclass
class _OpenLesion:
    index: int
    first_image: int
    patient: _OpenPatient
    traits: _LesionTraits
    planned_shots: int
    shots: int = 0


@dataclass
class _OpenPatient:
    index: int
    first_image: int
    skin_lab: tuple[float, float, float]
    planned_lesions: int
    lesions: int = 0


def _planned(rng: np.random.Generator, maximum: int, probability: float) -> int:
    if maximum > 1 and rng.random() < probability:
        return int(rng.integers(2, maximum + 1))
    return 1


def _ids(seed: int) -> tuple[str, str, str]:
    prefix = f"phantom-s{seed}"
    return f"{prefix}-{{:06d}}", f"{prefix}-L{{:06d}}", f"{prefix}-P{{:06d}}"


def plan_phantom(config: PhantomConfig) -> list[PhantomSpec]:
    """Sample the ground truth of every image of a phantom dataset.

    Args:
        config: The dataset configuration.

    Returns:
        One ``PhantomSpec`` per image, in index order. ``plan_phantom(c)[:m]`` equals the
        plan of the same config with ``count=m``.
    """
    seed = config.seed
    fsts = [int(f) for f in FST]
    fst_labels = stable_allocation(
        [config.fst_mix[f] for f in fsts], config.count, [seed, 0xF57, 0xA11]
    )
    dx_labels = stable_allocation(
        [config.diagnosis_mix[d] for d in SUPPORTED_DIAGNOSES],
        config.count,
        [seed, 0xD1A, 0xA11],
    )
    image_fmt, lesion_fmt, patient_fmt = _ids(seed)
    open_lesions: dict[tuple[int, str], _OpenLesion] = {}
    open_patients: dict[int, _OpenPatient] = {}
    n_lesions = 0
    n_patients = 0
    specs: list[PhantomSpec] = []
    for index in range(config.count):
        fst = fsts[int(fst_labels[index])]
        code = SUPPORTED_DIAGNOSES[int(dx_labels[index])]
        lesion = open_lesions.get((fst, code))
        if lesion is None:
            patient = open_patients.get(fst)
            if patient is None:
                patient_rng = np.random.default_rng([seed, index, 2])
                patient = _OpenPatient(
                    index=n_patients,
                    first_image=index,
                    skin_lab=sample_skin_lab(patient_rng, fst),
                    planned_lesions=_planned(
                        patient_rng, config.max_lesions_per_patient, config.multi_lesion_probability
                    ),
                )
                n_patients += 1
                open_patients[fst] = patient
            patient.lesions += 1
            if patient.lesions >= patient.planned_lesions:
                del open_patients[fst]
            lesion_rng = np.random.default_rng([seed, index, 1])
            lesion = _OpenLesion(
                index=n_lesions,
                first_image=index,
                patient=patient,
                planned_shots=_planned(
                    lesion_rng, config.max_images_per_lesion, config.multi_image_probability
                ),
                traits=_sample_lesion_traits(lesion_rng, code, config.field_of_view_mm),
            )
            n_lesions += 1
            open_lesions[(fst, code)] = lesion
        shot = lesion.shots
        lesion.shots += 1
        if lesion.shots >= lesion.planned_shots:
            del open_lesions[(fst, code)]

        image_rng = np.random.default_rng([seed, index, 0])
        traits = lesion.traits
        rotation = traits.rotation_deg
        offset = traits.offset_mm
        if shot > 0:  # a re-shot: the same lesion, slightly turned and moved
            rotation += float(image_rng.uniform(-25, 25))
            jitter = 0.03 * config.field_of_view_mm
            offset = (
                offset[0] + float(image_rng.uniform(-jitter, jitter)),
                offset[1] + float(image_rng.uniform(-jitter, jitter)),
            )
        hairs = 0
        if image_rng.random() < config.hair_probability:
            hairs = 1 + int(image_rng.binomial(config.max_hairs - 1, 0.4))
        skin = lesion.patient.skin_lab
        specs.append(
            PhantomSpec(
                index=index,
                image_id=image_fmt.format(index),
                lesion_id=lesion_fmt.format(lesion.index),
                patient_id=patient_fmt.format(lesion.patient.index),
                shot=shot,
                fst=fst,
                ita=float(ita_degrees(skin[0], skin[2])),
                skin_lab=skin,
                diagnosis=code,
                asymmetry_axes=traits.asymmetry_axes,
                irregular_segments=traits.irregular_segments,
                colours=traits.colours,
                structures=traits.structures,
                diameter_mm=traits.diameter_mm,
                hair_count=hairs,
                image_size=config.image_size,
                field_of_view_mm=config.field_of_view_mm,
                supersample=config.supersample,
                lesion_offset_mm=(float(offset[0]), float(offset[1])),
                lesion_rotation_deg=float(rotation % 360.0),
                lesion_seed=(seed, lesion.first_image, 3),
                image_seed=(seed, index, 4),
            )
        )
    return specs


def reskin(spec: PhantomSpec, fst: FST | int) -> PhantomSpec:
    """The same image with the lesion on another skin type: a counterfactual for fairness tests.

    Everything but the skin (type, colour, ITA, and with them the lesion contrast) stays:
    the lesion, its position, the lighting and the hair. The new skin colour is drawn
    deterministically from the image seed and the new type.

    Args:
        spec: The image to re-skin.
        fst: The new Fitzpatrick skin type.

    Returns:
        A new spec (``spec`` itself if ``fst`` is already its type).
    """
    fst = int(FST(fst))
    if fst == spec.fst:
        return spec
    skin = sample_skin_lab(np.random.default_rng([*spec.image_seed, 100 + fst]), fst)
    return replace(spec, fst=fst, skin_lab=skin, ita=float(ita_degrees(skin[0], skin[2])))

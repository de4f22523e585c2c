"""Estimating the skin tone (ITA, then Fitzpatrick type) of a dermoscopic image.

Public dermoscopy sets (HAM10000, ISIC) carry no Fitzpatrick label, so FairDerm estimates it
from the pixels, and the same estimator checks that a synthetic image shows the skin type
it was generated for (the tone-fidelity gate, see ``validation.tone``). No masks are given:
``estimate_skin_ita`` finds the healthy skin itself and measures its Individual Typology
Angle (Chardon et al., 1991)::

    ITA = arctan((L* - 50) / b*) * 180 / pi        (computed as arctan2, see validation.skin)

which ``ItaThresholds`` maps onto FST I-VI (Del Bino / Kinyanjui cut points by default).

Method (all steps work on CIELAB, D65, from sRGB):

1. **Dermoscope border.** Dermoscopy studies commonly crop a fixed 4 % off every side to
   drop the dark corners of the dermoscope's circular field. A fixed crop keeps the corners
   of a small field and throws away skin of a full-frame image, so instead the field is
   *detected from luminance* (no centred-circle prior): a pixel is "dark" when its L* is
   below ``field_threshold`` times the image's bright level (95th percentile of L*) or
   below ``black_level``; the dark regions connected to the image edge are the outside of
   the field (a dark lesion or hair inside the field does not reach the edge through dark
   pixels, so it is left to the steps below). The field is then eroded by
   ``border_margin`` of the shorter side (at least one pixel) to drop the anti-aliased rim.
   An alpha channel, if given, also marks pixels outside the field (alpha below half).
   Gradual vignetting inside the field is not flat-field corrected: strongly darkened
   skin falls out as outliers in step 3, mildly darkened skin stays (as it would in the
   phantom's ground truth).
2. **Hair.** Thin dark structures are found with a morphological black top-hat of L*
   (grey closing minus the image) with a square footprint of ``hair_width`` of the shorter
   side (at least 3 pixels, made odd): a pixel is hair when the top-hat exceeds both
   ``hair_contrast`` L* units and ``hair_noise`` times the image's fine-noise level (robust
   standard deviation of L* minus its 3 x 3 mean). The hair mask is dilated by one pixel to
   catch its anti-aliased edge.
3. **Lesion.** The skin colour is first taken from the *periphery* of the field (pixels
   beyond ``periphery`` equivalent radii, ``sqrt(area / pi)``, from the field's centroid:
   lesions sit in the middle of dermoscopic images) as the per-channel median of L*, a*,
   b*. Then, for ``iterations`` rounds, every non-hair field pixel gets a robust distance
   from that colour, each channel scaled by its spread (1.4826 x MAD, floored at
   ``min_spread``); pixels farther than ``outlier_z`` are outliers, and the colour and
   spreads are re-estimated from the inliers alone. Because each round only looks at the
   pixels close to the current skin colour, the estimate cannot drift into a lesion that
   covers more of the image than the skin does. The outliers are dropped; their clusters
   (a 2 x 2 opening discards lone noisy pixels) are the lesion, which is dilated by
   ``lesion_margin`` of the shorter side (at least one pixel) because a lesion's soft rim
   tints the skin a little beyond its outline.
4. **Specular highlights.** Pixels whose every sRGB channel reaches ``specular_level``
   (clipped glare) or whose L* exceeds the skin's by more than ``specular_delta`` are
   dropped.
5. **Statistic.** ITA is computed per remaining pixel and summarised by the median
   (``statistic="median"``, the default: robust to what the masks miss, and the statistic
   the phantom's ground truth is defined with) or by a symmetric ``trim``-trimmed mean
   (``statistic="trimmed_mean"``). The reported L*, a*, b* are the per-channel medians (or
   trimmed means) over the same pixels; note that the ITA of the median colour is not
   exactly the median ITA.

Quality: an input that cannot be read as a colour image (grayscale images and arrays are
rejected: ITA needs b*), is smaller than ``min_size`` or has no skin pixel left at all (an
all-black image, say) raises ``ValueError`` naming the argument. When skin remains but
covers less than ``min_skin_fraction`` of the image or fewer than ``min_skin_pixels``
pixels, or has almost no chroma (an RGB image of a grey scene), the estimate is returned
with ``reliable=False`` and a ``reason``; ``estimate_fst`` raises on such an estimate
unless ``require_reliable=False``, and ``estimated_fsts`` maps it to ``None``.

The estimator is pure numpy/scipy/PIL and takes a few milliseconds for a 64 x 64 image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from validation.checks import check_float as _check_float
from validation.checks import check_int as _check_int
from validation.skin import DEFAULT_THRESHOLDS, ItaThresholds, ita_degrees, srgb_to_lab
from validation.vocabulary import FST

#: What the estimator accepts: a PIL image or an H x W x 3 (or x 4, RGBA) array.
ImageInput: TypeAlias = Image.Image | NDArray[Any]
#: What the batch function accepts in addition: a path to an image file.
ImageSource: TypeAlias = Image.Image | NDArray[Any] | str | os.PathLike[str]

STATISTICS: tuple[str, ...] = ("median", "trimmed_mean")


@dataclass(frozen=True)
class ItaEstimatorConfig:
    """Parameters of ``estimate_skin_ita`` (see the module docstring for the method).

    Args:
        thresholds: ITA cut points that map the estimate onto a Fitzpatrick type.
        min_size: Smallest accepted image side in pixels (8 to 4096).
        field_threshold: A pixel darker than this fraction of the image's bright level
            (95th percentile of L*) counts as dark; dark regions touching the image edge
            are outside the dermoscope field (0 to 0.9).
        black_level: L* below which a pixel always counts as dark (0 to 50).
        border_margin: Erosion of the detected field, as a fraction of the shorter image
            side (0 to 0.2); at least one pixel when non-zero.
        hair_width: Footprint of the black top-hat that finds hair, as a fraction of the
            shorter side (0 to 0.25; at least 3 pixels). 0 disables hair removal.
        hair_contrast: Smallest top-hat response (L* units) counted as hair (0 to 100).
        hair_noise: The top-hat must also exceed this multiple of the image's fine-noise
            level (robust std of L* minus its 3 x 3 mean) to count as hair (0 to 20).
        hair_length: A connected dark structure counts as hair only when its bounding box
            diagonal is at least this fraction of the shorter side (0 to 1): hair is long,
            pores and pigment dots are not.
        periphery: The first skin colour comes from field pixels beyond this fraction of
            the field's equivalent radius from its centroid (0 to 0.95).
        outlier_z: Robust distance (in per-channel spreads) beyond which a pixel is not
            skin (1 to 20).
        min_spread: Floor of the per-channel spread (L*, a*, b* units) so that a very
            uniform skin does not turn its own noise into outliers (0.1 to 20).
        iterations: Rounds of re-estimating the skin colour from its inliers (1 to 20).
        lesion_margin: Dilation of the lesion candidate, as a fraction of the shorter side
            (0 to 0.2).
        specular_level: sRGB level (0..1) every channel must reach for glare (0.5 to 1).
        specular_delta: L* above the skin's beyond which a pixel is a highlight (1 to 100).
        min_skin_fraction: Below this fraction of the image's pixels left as skin, the
            estimate is flagged unreliable (0 to 1).
        min_skin_pixels: Below this many skin pixels the estimate is flagged unreliable
            as well (1 to 1,000,000).
        min_chroma: Below this skin chroma (``sqrt(a*^2 + b*^2)``; real skin has about
            10-30) the estimate is flagged unreliable: a grey or badly white-balanced
            image, whose ITA means nothing (0 to 50).
        statistic: ``"median"`` or ``"trimmed_mean"`` of the per-pixel ITA.
        trim: Fraction cut from each end for ``"trimmed_mean"`` (0 to 0.45).
    """

    thresholds: ItaThresholds = DEFAULT_THRESHOLDS
    min_size: int = 16
    field_threshold: float = 0.35
    black_level: float = 6.0
    border_margin: float = 0.015
    hair_width: float = 0.08
    hair_contrast: float = 6.0
    hair_noise: float = 4.0
    hair_length: float = 0.15
    periphery: float = 0.55
    outlier_z: float = 3.0
    min_spread: float = 1.5
    iterations: int = 4
    lesion_margin: float = 0.03
    specular_level: float = 0.97
    specular_delta: float = 15.0
    min_skin_fraction: float = 0.05
    min_skin_pixels: int = 32
    min_chroma: float = 3.0
    statistic: Literal["median", "trimmed_mean"] = "median"
    trim: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.thresholds, ItaThresholds):
            raise ValueError(
                f"thresholds: must be an ItaThresholds, got {type(self.thresholds).__name__}"
            )
        if self.statistic not in STATISTICS:
            raise ValueError(
                f"statistic: must be one of {', '.join(STATISTICS)}, got {self.statistic!r}"
            )
        checked: dict[str, Any] = {
            "min_size": _check_int("min_size", self.min_size, 8, 4096),
            "field_threshold": _check_float("field_threshold", self.field_threshold, 0, 0.9),
            "black_level": _check_float("black_level", self.black_level, 0, 50),
            "border_margin": _check_float("border_margin", self.border_margin, 0, 0.2),
            "hair_width": _check_float("hair_width", self.hair_width, 0, 0.25),
            "hair_contrast": _check_float("hair_contrast", self.hair_contrast, 0, 100),
            "hair_noise": _check_float("hair_noise", self.hair_noise, 0, 20),
            "hair_length": _check_float("hair_length", self.hair_length, 0, 1),
            "periphery": _check_float("periphery", self.periphery, 0, 0.95),
            "outlier_z": _check_float("outlier_z", self.outlier_z, 1, 20),
            "min_spread": _check_float("min_spread", self.min_spread, 0.1, 20),
            "iterations": _check_int("iterations", self.iterations, 1, 20),
            "lesion_margin": _check_float("lesion_margin", self.lesion_margin, 0, 0.2),
            "specular_level": _check_float("specular_level", self.specular_level, 0.5, 1),
            "specular_delta": _check_float("specular_delta", self.specular_delta, 1, 100),
            "min_skin_fraction": _check_float("min_skin_fraction", self.min_skin_fraction, 0, 1),
            "min_skin_pixels": _check_int("min_skin_pixels", self.min_skin_pixels, 1, 1_000_000),
            "min_chroma": _check_float("min_chroma", self.min_chroma, 0, 50),
            "trim": _check_float("trim", self.trim, 0, 0.45),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class ItaEstimate:
    """The skin tone estimated from one image.

    Attributes:
        ita: ITA of the skin in degrees (the configured statistic of per-pixel ITA).
        fst: Fitzpatrick type of ``ita`` under the configured thresholds.
        lightness, a_star, b_star: The skin colour (CIELAB) over the pixels used.
        ita_iqr: Interquartile range of the per-pixel ITA (degrees): the skin's spread.
        skin_fraction: Fraction of the image's pixels used as skin.
        field_fraction: Fraction of the image's pixels inside the detected field.
        n_pixels: Number of pixels used.
        reliable: ``False`` when too little skin was left or it has almost no colour
            (see ``reason``).
        reason: Why the estimate is unreliable; empty when it is reliable.
        skin_mask: The pixels used (H x W, boolean); not part of equality or ``to_dict``.
    """

    ita: float
    fst: FST
    lightness: float
    a_star: float
    b_star: float
    ita_iqr: float
    skin_fraction: float
    field_fraction: float
    n_pixels: int
    reliable: bool
    reason: str = ""
    skin_mask: NDArray[np.bool_] | None = field(default=None, repr=False, compare=False)

    @property
    def fst_if_reliable(self) -> FST | None:
        """``fst`` when the estimate is reliable, else ``None`` (for ``tone_fidelity``)."""
        return self.fst if self.reliable else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no mask)."""
        return {
            "ita": self.ita,
            "fst": int(self.fst),
            "L": self.lightness,
            "a": self.a_star,
            "b": self.b_star,
            "ita_iqr": self.ita_iqr,
            "skin_fraction": self.skin_fraction,
            "field_fraction": self.field_fraction,
            "n_pixels": self.n_pixels,
            "reliable": self.reliable,
            "reason": self.reason,
        }


# --- input --------------------------------------------------------------------------------

_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_rgb_array(image: object) -> tuple[NDArray[np.float64], NDArray[np.bool_] | None]:
    """RGB in [0, 1] (H x W x 3) and, for RGBA input, the opaque-pixel mask."""
    if isinstance(image, Image.Image):
        if image.mode in _GREY_MODES:
            raise ValueError(
                f"image: a {image.mode!r} (grayscale) image has no colour; ITA needs b*, "
                "so give an RGB image"
            )
        if image.mode not in ("RGB", "RGBA"):
            alpha = "transparency" in image.info or image.mode in ("PA", "RGBa")
            target = "RGBA" if alpha else "RGB"
            try:
                image = image.convert(target)
            except (ValueError, OSError) as error:
                raise ValueError(
                    f"image: cannot convert a {image.mode!r} image to RGB ({error})"
                ) from None
        array: NDArray[Any] = np.asarray(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise ValueError(
            f"image: expected a PIL image or an H x W x 3 array, got {type(image).__name__}"
        )
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 2)):
        raise ValueError(
            f"image: grayscale input (shape {array.shape}) has no colour; ITA needs b*, "
            "so give an RGB image"
        )
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(
            f"image: expected an H x W x 3 (RGB) or x 4 (RGBA) array, got {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"image: the array is empty (shape {array.shape})")
    if array.dtype == np.bool_:
        raise ValueError("image: boolean arrays are not images")
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("image: float input contains NaN or infinity")
        if values.min() < -1e-6 or values.max() > 1 + 1e-6:
            raise ValueError(
                "image: float input must lie in [0, 1] (got "
                f"{values.min():.3g}..{values.max():.3g}); divide 8-bit values by 255"
            )
        values = np.clip(values, 0.0, 1.0)
    elif np.issubdtype(array.dtype, np.integer):
        if array.dtype == np.uint16:
            values = array.astype(np.float64) / 65535.0
        else:
            if array.min() < 0 or array.max() > 255:
                raise ValueError(
                    f"image: {array.dtype} input must hold 8-bit values 0..255 "
                    f"(got {array.min()}..{array.max()})"
                )
            values = array.astype(np.float64) / 255.0
    else:
        raise ValueError(f"image: unsupported array dtype {array.dtype}")
    opaque = values[..., 3] >= 0.5 if values.shape[2] == 4 else None
    return values[..., :3], opaque


def _load(source: ImageSource) -> ImageInput:
    if isinstance(source, (str, os.PathLike)):
        with Image.open(source) as opened:
            opened.load()
            return opened.copy()
    return source


# --- the steps ----------------------------------------------------------------------------


def _pixels(fraction: float, side: int, minimum: int = 1) -> int:
    """``fraction`` of ``side`` in whole pixels; 0 stays 0, else at least ``minimum``."""
    if fraction <= 0:
        return 0
    return max(minimum, int(round(fraction * side)))


def _disc(radius: int) -> NDArray[np.bool_]:
    axis = np.arange(-radius, radius + 1)
    return (axis[:, None] ** 2 + axis[None, :] ** 2) <= radius * radius + radius


def _field_mask(
    lightness: NDArray[np.float64],
    opaque: NDArray[np.bool_] | None,
    config: ItaEstimatorConfig,
) -> NDArray[np.bool_]:
    """Inside the dermoscope field (dark regions touching the edge removed), eroded."""
    valid = np.ones(lightness.shape, dtype=bool) if opaque is None else opaque
    bright = float(np.percentile(lightness[valid], 95)) if valid.any() else 0.0
    level = max(config.black_level, config.field_threshold * bright)
    outside = (lightness < level) | ~valid
    labels, count = ndimage.label(outside)
    if count:
        edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        touching = np.unique(edge[edge > 0])
        border = np.isin(labels, touching)
    else:
        border = np.zeros(lightness.shape, dtype=bool)
    inside = ~border
    margin = _pixels(config.border_margin, min(lightness.shape))
    if margin and inside.any():
        # Pad with "outside" so that a field filling the whole frame is eroded at the edge too.
        padded = np.pad(inside, margin, constant_values=False)
        inside = ndimage.binary_erosion(padded, _disc(margin))[margin:-margin, margin:-margin]
    return inside


def _hair_mask(
    lightness: NDArray[np.float64], field_mask: NDArray[np.bool_], config: ItaEstimatorConfig
) -> NDArray[np.bool_]:
    """Thin dark structures: black top-hat of L* above the contrast and noise floors."""
    size = _pixels(config.hair_width, min(lightness.shape), minimum=3)
    if size == 0 or not field_mask.any():
        return np.zeros(lightness.shape, dtype=bool)
    size += 1 - size % 2  # odd, centred footprint
    # Fill the outside of the field with the skin's level so its edge is not a "structure".
    filled = np.where(field_mask, lightness, float(np.median(lightness[field_mask])))
    tophat = ndimage.grey_closing(filled, size=(size, size)) - filled
    residual = filled - ndimage.uniform_filter(filled, size=3)
    noise = 1.4826 * float(
        np.median(np.abs(residual[field_mask] - np.median(residual[field_mask])))
    )
    hair = field_mask & (tophat > max(config.hair_contrast, config.hair_noise * noise))
    if not hair.any():
        return hair
    # Hair is long: keep only thin dark components that stretch across a good part of the
    # image, not the dots of pores, pigment network or dark skin texture.
    labels, count = ndimage.label(hair, structure=np.ones((3, 3), dtype=bool))
    min_length = config.hair_length * min(lightness.shape)
    long = np.zeros(count + 1, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            extent = math.hypot(box[0].stop - box[0].start, box[1].stop - box[1].start)
            long[index] = extent >= min_length
    return long[labels]


def _radial_distance(field_mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Distance of every pixel from the field's centroid, in field equivalent radii."""
    rows, cols = np.nonzero(field_mask)
    radius = max(1.0, math.sqrt(rows.size / math.pi))
    grid_rows, grid_cols = np.indices(field_mask.shape)
    return np.hypot(grid_rows - rows.mean(), grid_cols - cols.mean()) / radius


def _robust_centre_spread(
    values: NDArray[np.float64], floor: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    centre = np.median(values, axis=0)
    spread = 1.4826 * np.median(np.abs(values - centre), axis=0)
    return centre, np.maximum(spread, floor)


def _trimmed_colour(
    lab: NDArray[np.float64],
    candidates: NDArray[np.bool_],
    seed: NDArray[np.bool_],
    config: ItaEstimatorConfig,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Skin colour re-estimated from its own inliers, starting from the ``seed`` pixels.

    Returns the colour (L*, a*, b*) and the inlier mask (a subset of ``candidates``).
    """
    centre, spread = _robust_centre_spread(lab[seed], config.min_spread)
    values = lab[candidates]
    inlier = np.ones(values.shape[0], dtype=bool)
    for _ in range(config.iterations):
        z = np.sqrt((((values - centre) / spread) ** 2).sum(axis=1))
        new_inlier = z <= config.outlier_z
        if not new_inlier.any():
            break
        inlier = new_inlier
        centre, spread = _robust_centre_spread(values[inlier], config.min_spread)
    mask = np.zeros(candidates.shape, dtype=bool)
    mask[candidates] = inlier
    return centre, mask


def _skin_mask(
    lab: NDArray[np.float64],
    rgb: NDArray[np.float64],
    field_mask: NDArray[np.bool_],
    hair_mask: NDArray[np.bool_],
    config: ItaEstimatorConfig,
) -> NDArray[np.bool_]:
    """Field pixels that are neither hair, lesion nor glare."""
    candidates = field_mask & ~hair_mask
    if not candidates.any():
        return candidates
    seed = candidates & (_radial_distance(field_mask) >= config.periphery)
    if seed.sum() < 8:
        seed = candidates
    centre, inlier = _trimmed_colour(lab, candidates, seed, config)
    outlier = candidates & ~inlier
    # The lesion: outliers that are not lone noisy pixels, grown over its soft rim.
    lesion = ndimage.binary_opening(outlier, np.ones((2, 2), dtype=bool))
    margin = _pixels(config.lesion_margin, min(field_mask.shape))
    if margin and lesion.any():
        lesion = ndimage.binary_dilation(lesion, _disc(margin))
    glare = (rgb.min(axis=-1) >= config.specular_level) | (
        lab[..., 0] > centre[0] + config.specular_delta
    )
    return inlier & ~lesion & ~glare


def _summary(values: NDArray[np.float64], config: ItaEstimatorConfig) -> float:
    if config.statistic == "median":
        return float(np.median(values))
    ordered = np.sort(values)
    cut = int(math.floor(config.trim * ordered.size))
    kept = ordered[cut : ordered.size - cut] if ordered.size - 2 * cut > 0 else ordered
    return float(kept.mean())


def estimate_skin_ita(
    image: ImageInput, *, config: ItaEstimatorConfig | None = None
) -> ItaEstimate:
    """Estimate the ITA and Fitzpatrick type of the healthy skin in a dermoscopic image.

    Args:
        image: A PIL image (RGB, RGBA or anything that converts to RGB; grayscale is
            rejected) or an H x W x 3 array: uint8 0..255, uint16 0..65535 or float in
            [0, 1]. An H x W x 4 array or an RGBA image uses its alpha channel to mark
            pixels outside the field (alpha below half).
        config: Estimator parameters; the defaults suit dermoscopy at 32 px and up.

    Returns:
        The estimate; ``reliable`` is ``False`` (with a ``reason``) when skin covers less
        than ``config.min_skin_fraction`` of the image or fewer than
        ``config.min_skin_pixels`` pixels, or has less chroma than ``config.min_chroma``.

    Raises:
        ValueError: naming ``image`` when the input is not a colour image, is smaller than
            ``config.min_size`` or shows no skin at all (e.g. an all-black image).
    """
    config = ItaEstimatorConfig() if config is None else config
    rgb, opaque = _to_rgb_array(image)
    height, width = rgb.shape[:2]
    if min(height, width) < config.min_size:
        raise ValueError(
            f"image: {width} x {height} pixels is too small to find skin in; "
            f"both sides must be at least {config.min_size} (ItaEstimatorConfig.min_size)"
        )
    lab = srgb_to_lab(rgb)
    lightness = lab[..., 0]
    field_mask = _field_mask(lightness, opaque, config)
    if not field_mask.any():
        raise ValueError(
            "image: no dermoscope field found: the image is (nearly) black or empty "
            f"(bright level L* {float(np.percentile(lightness, 95)):.1f})"
        )
    hair_mask = _hair_mask(lightness, field_mask, config)
    skin = _skin_mask(lab, rgb, field_mask, hair_mask, config)
    n_pixels = int(skin.sum())
    if n_pixels == 0:
        raise ValueError("image: no skin pixels left after removing border, hair and lesion")
    skin_lab = lab[skin]
    ita_values = ita_degrees(skin_lab[:, 0], skin_lab[:, 2])
    ita = _summary(ita_values, config)
    q1, q3 = np.percentile(ita_values, [25, 75])
    total = height * width
    skin_fraction = n_pixels / total
    reasons: list[str] = []
    if skin_fraction < config.min_skin_fraction:
        reasons.append(
            f"only {skin_fraction:.1%} of the image is usable skin "
            f"(min_skin_fraction {config.min_skin_fraction:.1%})"
        )
    if n_pixels < config.min_skin_pixels:
        reasons.append(f"only {n_pixels} skin pixels (min_skin_pixels {config.min_skin_pixels})")
    chroma = math.hypot(float(np.median(skin_lab[:, 1])), float(np.median(skin_lab[:, 2])))
    if chroma < config.min_chroma:
        reasons.append(
            f"the skin has almost no colour (chroma {chroma:.1f} < min_chroma "
            f"{config.min_chroma:g}): a grey or badly white-balanced image"
        )
    reliable = not reasons
    reason = "; ".join(reasons)
    return ItaEstimate(
        ita=ita,
        fst=config.thresholds.fst(ita),
        lightness=_summary(skin_lab[:, 0], config),
        a_star=_summary(skin_lab[:, 1], config),
        b_star=_summary(skin_lab[:, 2], config),
        ita_iqr=float(q3 - q1),
        skin_fraction=skin_fraction,
        field_fraction=float(field_mask.sum()) / total,
        n_pixels=n_pixels,
        reliable=reliable,
        reason=reason,
        skin_mask=skin,
    )


def estimate_fst(
    image: ImageInput,
    *,
    config: ItaEstimatorConfig | None = None,
    require_reliable: bool = True,
) -> FST:
    """The Fitzpatrick skin type of a dermoscopic image (``estimate_skin_ita(...).fst``).

    Args:
        image: As for ``estimate_skin_ita``.
        config: Estimator parameters.
        require_reliable: Raise instead of returning a type from too little skin.

    Returns:
        The estimated type.

    Raises:
        ValueError: as ``estimate_skin_ita``, and when the estimate is unreliable and
            ``require_reliable`` is set.
    """
    estimate = estimate_skin_ita(image, config=config)
    if require_reliable and not estimate.reliable:
        raise ValueError(f"image: skin type not reliable: {estimate.reason}")
    return estimate.fst


def estimate_batch(
    images: Iterable[ImageSource],
    *,
    config: ItaEstimatorConfig | None = None,
    strict: bool = False,
) -> list[ItaEstimate | None]:
    """Estimate the skin tone of many images or image files.

    Args:
        images: PIL images, arrays (as for ``estimate_skin_ita``) or paths to image files.
        config: Estimator parameters, shared by all images.
        strict: Re-raise the first error instead of recording ``None`` for that image.

    Returns:
        One estimate per input, in order; ``None`` where the image could not be read or
        estimated (unless ``strict``). ``estimated_fsts`` turns the list into the
        ``estimated`` argument of ``validation.tone.tone_fidelity``.
    """
    config = ItaEstimatorConfig() if config is None else config
    results: list[ItaEstimate | None] = []
    for source in images:
        try:
            results.append(estimate_skin_ita(_load(source), config=config))
        except (ValueError, OSError):
            if strict:
                raise
            results.append(None)
    return results


def estimated_fsts(
    estimates: Sequence[ItaEstimate | None], *, require_reliable: bool = True
) -> list[int | None]:
    """Skin types (1-6) of batch estimates, ``None`` for failed (or unreliable) ones.

    Args:
        estimates: Output of ``estimate_batch``.
        require_reliable: Map unreliable estimates to ``None`` as well.

    Returns:
        One entry per estimate, ready for ``validation.tone.tone_fidelity``.
    """
    out: list[int | None] = []
    for estimate in estimates:
        if estimate is None or (require_reliable and not estimate.reliable):
            out.append(None)
        else:
            out.append(int(estimate.fst))
    return out

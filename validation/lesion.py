"""Lesion preservation between a source image and its img2img translation.

img2img toward another skin type should change the skin and keep the lesion. Two figures say
how much of the lesion survived, both on the source's lesion region:

- ``ssim``: the structural similarity (Wang et al. 2004; Gaussian window, sigma 1.5, on CIE
  L*) between source and output, averaged over the source's lesion mask. 1 means the lesion's
  structure is unchanged; brightness is compared only through SSIM's own luminance term.
- ``mask_iou``: intersection over union of the lesion masks found in the two images (shape and
  position kept).

The lesion mask: the darkest connected region of the image under an Otsu threshold of L*,
the component nearest the centre (dermoscopy centres the lesion). Skin darker than the lesion
makes the mask fail: ``LesionPreservation.found`` is then ``False`` and the figures are None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import ndimage

from validation.skin import srgb_to_lab

#: Masks smaller than this share of the image are treated as "no lesion found".
MIN_LESION_SHARE = 0.005


def _lightness(
    image: Image.Image | NDArray[Any], size: tuple[int, int] | None
) -> NDArray[np.float64]:
    if isinstance(image, Image.Image):
        rgb = image.convert("RGB")
        if size is not None and rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.BICUBIC)
        array = np.asarray(rgb, dtype=np.float64) / 255.0
    else:
        array = np.asarray(image, dtype=np.float64)
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"image: expected an RGB array (H, W, 3), got shape {array.shape}")
        if array.max() > 1.0:
            array = array / 255.0
    return srgb_to_lab(array)[..., 0]


def _otsu(values: NDArray[np.float64]) -> float:
    histogram, edges = np.histogram(values, bins=128)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(histogram)
    total = weight[-1]
    mean = np.cumsum(histogram * centres)
    between = (mean[-1] * weight - mean * total) ** 2 / np.maximum(weight * (total - weight), 1)
    # Class "dark" holds bins 0..k, so the threshold is the upper edge of bin k.
    return float(edges[int(np.argmax(between[:-1])) + 1])


def lesion_mask(lightness: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The lesion of an L* image: the dark Otsu component nearest the centre (may be empty)."""
    if float(lightness.max() - lightness.min()) < 5.0:  # flat image: no contrast, no lesion
        return np.zeros(lightness.shape, dtype=bool)
    dark = ndimage.binary_opening(lightness <= _otsu(lightness), np.ones((2, 2), dtype=bool))
    labels, count = ndimage.label(dark)
    if count == 0:
        return dark
    height, width = lightness.shape
    centres = ndimage.center_of_mass(dark, labels, range(1, count + 1))
    distances = [np.hypot(y - height / 2, x - width / 2) for y, x in centres]
    mask = labels == (int(np.argmin(distances)) + 1)
    if mask.mean() < MIN_LESION_SHARE:
        return np.zeros(lightness.shape, dtype=bool)
    return mask


def ssim_map(
    a: NDArray[np.float64], b: NDArray[np.float64], data_range: float = 100.0
) -> NDArray[np.float64]:
    """Per-pixel SSIM of two grey images (Gaussian window, sigma 1.5, K1 0.01, K2 0.03)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return ndimage.gaussian_filter(x, sigma=1.5, truncate=3.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )


@dataclass(frozen=True)
class LesionPreservation:
    """How much of the source's lesion the output kept (see the module docstring)."""

    found: bool
    ssim: float | None
    mask_iou: float | None
    lesion_share: float

    DEFINITION = (
        "ssim: structural similarity of L* between source and output over the source's lesion "
        "mask (1 = unchanged); mask_iou: overlap of the lesion masks found in both images"
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "ssim": self.ssim,
            "mask_iou": self.mask_iou,
            "lesion_share": self.lesion_share,
        }


def lesion_preservation(
    source: Image.Image | NDArray[Any], output: Image.Image | NDArray[Any]
) -> LesionPreservation:
    """Compare ``output`` with the ``source`` it was translated from (resized to the output)."""
    out_l = _lightness(output, None)
    size = (out_l.shape[1], out_l.shape[0])
    src_l = _lightness(source, size)
    if src_l.shape != out_l.shape:
        raise ValueError(f"source: shape {src_l.shape} does not match output {out_l.shape}")
    mask = lesion_mask(src_l)
    if not mask.any():
        return LesionPreservation(False, None, None, 0.0)
    score = float(ssim_map(src_l, out_l)[mask].mean())
    other = lesion_mask(out_l)
    union = np.logical_or(mask, other).sum()
    iou = float(np.logical_and(mask, other).sum() / union) if union else 0.0
    return LesionPreservation(True, round(score, 4), round(iou, 4), round(float(mask.mean()), 4))

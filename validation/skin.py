"""Skin-tone colour science: CIELAB conversion, the Individual Typology Angle and FST bins.

ITA (Chardon et al., 1991) is the angle of a colour in the (b*, L*) half-plane around the
point L* = 50, b* = 0::

    ITA = arctan((L* - 50) / b*) * 180 / pi

Skin colours have b* > 0, where ``arctan2(L* - 50, b*)`` used here equals that formula; it
stays defined (±90 degrees) at b* = 0. Higher ITA means lighter skin. ``ItaThresholds`` maps
ITA onto Fitzpatrick types with the cut points FairDerm uses by default (Del Bino's ITA
categories aligned with FST as in Kinyanjui et al., 2020)::

    ITA > 55 -> I,  41..55 -> II,  28..41 -> III,  10..28 -> IV,  -30..10 -> V,  < -30 -> VI

sRGB <-> CIELAB uses the D65 white point and the IEC 61966-2-1 transfer curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from validation.vocabulary import FST

# D65 reference white (CIE 1931 2 degree observer), X and Z relative to Y = 1.
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_EPSILON = 216 / 24389
_KAPPA = 24389 / 27


def srgb_to_lab(rgb: ArrayLike) -> NDArray[np.float64]:
    """Convert sRGB values in [0, 1] (last axis = R, G, B) to CIELAB (L* in 0..100)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb: last axis must hold 3 channels, got shape {rgb.shape}")
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def lab_to_srgb(lab: ArrayLike) -> NDArray[np.float64]:
    """Convert CIELAB to sRGB in [0, 1]; colours outside the sRGB gamut are clipped."""
    lab = np.asarray(lab, dtype=np.float64)
    if lab.shape[-1] != 3:
        raise ValueError(f"lab: last axis must hold L*, a*, b*, got shape {lab.shape}")
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA) * _WHITE_D65
    linear = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    rgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(rgb, 0.0, 1.0)


def ita_degrees(lightness: ArrayLike, b_star: ArrayLike) -> NDArray[np.float64]:
    """ITA in degrees from L* and b* (see the module docstring)."""
    lightness = np.asarray(lightness, dtype=np.float64)
    b_star = np.asarray(b_star, dtype=np.float64)
    return np.degrees(np.arctan2(lightness - 50.0, b_star))


@dataclass(frozen=True)
class ItaThresholds:
    """Lower ITA bounds (degrees) of FST I-V; anything below ``v`` is FST VI.

    Each type covers ``[lower bound, bound of the next lighter type)``; the bounds must
    decrease strictly from I to V.
    """

    i: float = 55.0
    ii: float = 41.0
    iii: float = 28.0
    iv: float = 10.0
    v: float = -30.0

    def __post_init__(self) -> None:
        bounds = self.lower_bounds()
        for (lighter, upper), (darker, lower) in zip(bounds, bounds[1:], strict=False):
            if not upper > lower:
                raise ValueError(
                    f"thresholds: FST {lighter.roman} bound ({upper}) must be above "
                    f"FST {darker.roman} bound ({lower})"
                )

    def lower_bounds(self) -> list[tuple[FST, float]]:
        return [
            (FST.I, self.i),
            (FST.II, self.ii),
            (FST.III, self.iii),
            (FST.IV, self.iv),
            (FST.V, self.v),
        ]

    def fst(self, ita: float) -> FST:
        """The skin type whose ITA bin holds ``ita``."""
        if not np.isfinite(ita):
            raise ValueError(f"ita: {ita!r} is not a finite angle")
        for fst, lower in self.lower_bounds():
            if ita > lower:
                return fst
        return FST.VI

    def ita_range(self, fst: FST | int) -> tuple[float, float]:
        """The (low, high) ITA interval of a type; FST I is capped at 90, FST VI at -90."""
        fst = FST(fst)
        uppers = {
            FST.I: 90.0,
            FST.II: self.i,
            FST.III: self.ii,
            FST.IV: self.iii,
            FST.V: self.iv,
            FST.VI: self.v,
        }
        lowers = {
            FST.I: self.i,
            FST.II: self.ii,
            FST.III: self.iii,
            FST.IV: self.iv,
            FST.V: self.v,
            FST.VI: -90.0,
        }
        return lowers[fst], uppers[fst]


DEFAULT_THRESHOLDS = ItaThresholds()


def fst_from_ita(ita: float, thresholds: ItaThresholds = DEFAULT_THRESHOLDS) -> FST:
    """Map an ITA angle onto a Fitzpatrick skin type (default thresholds above)."""
    return thresholds.fst(ita)

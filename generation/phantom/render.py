"""Rendering a ``PhantomSpec`` into a dermoscopy-like RGB image and ground-truth masks.

The image is composed in CIELAB at the output size and converted to sRGB; smooth fields are
anti-aliased analytically, drawn strokes are drawn ``supersample`` times finer and
box-downsampled:

1. skin: the patient's L*a*b* plus low-frequency texture, fine noise, pores and faint skin
   furrows; radial vignetting, a lighting gradient and a soft specular sheen. Darker skin is
   blotchier (low-frequency L* variation of ``1.3 + 0.35 * (FST - 1)``) and shows a faint
   physiological pigment network on FST IV-VI (L* drop ``1.4 * (FST - 3)`` on its lines);
2. the skin's lightness is then shifted so that the median ITA over the skin mask equals the
   drawn ITA (texture and lighting would otherwise bias it);
3. lesion: body colour, colour regions, network and stamped structures (see ``lesion.py``),
   as CIELAB differences from the skin, all multiplied by ``contrast_factor(fst)``;
4. hair: thin dark curved strands, over everything;
5. the dermoscope field: outside the circle the image is nearly black.

Masks (output resolution, boolean):

* ``field_mask``: fully inside the dermoscope circle;
* ``lesion_mask``: lesion opacity >= 0.5 (its outline), inside the circle;
* ``hair_mask``: any hair in the pixel;
* ``skin_mask``: in the field, no hair, and the lesion changes the colour by less than
  0.5 delta-E (so the soft rim of a lesion and streaks beyond it are in neither mask).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.special import expit

from generation.phantom.lesion import (
    COVER_CHANNEL,
    MOTTLE_CHANNEL,
    Layer,
    LesionModel,
    build_lesion,
)
from generation.phantom.spec import PhantomSpec
from validation.skin import ita_degrees, lab_to_srgb

_OUTSIDE_LAB = np.array([2.5, 0.3, 0.8])


@dataclass(frozen=True)
class PhantomRender:
    """A rendered phantom image and its ground-truth masks (all ``image_size`` square)."""

    image: Image.Image
    lesion_mask: NDArray[np.bool_]
    skin_mask: NDArray[np.bool_]
    hair_mask: NDArray[np.bool_]
    field_mask: NDArray[np.bool_]

    @property
    def lesion_fraction(self) -> float:
        """Share of the image's pixels inside the lesion outline."""
        return float(self.lesion_mask.mean())


_LESION_CACHE: OrderedDict[tuple[object, ...], LesionModel] = OrderedDict()
_LESION_CACHE_SIZE = 32


def _lesion_for(spec: PhantomSpec) -> LesionModel:
    """The lesion model of ``spec``, reused across the images of one lesion."""
    key = (
        spec.lesion_seed,
        spec.diagnosis,
        spec.asymmetry_axes,
        spec.irregular_segments,
        spec.colours,
        spec.structures,
        spec.diameter_mm,
    )
    model = _LESION_CACHE.get(key)
    if model is None:
        model = build_lesion(spec)
        _LESION_CACHE[key] = model
        while len(_LESION_CACHE) > _LESION_CACHE_SIZE:
            _LESION_CACHE.popitem(last=False)
    return model


def _smooth_noise(rng: np.random.Generator, n: int, cells: int) -> NDArray[np.float64]:
    """Zero-mean, unit-std smooth noise on an ``n`` x ``n`` grid, ~``cells`` blobs across."""
    grid = rng.standard_normal((cells + 1, cells + 1))
    position = np.linspace(0, cells, n)
    weights = np.exp(-((position[:, None] - np.arange(cells + 1)[None, :]) ** 2) / (2 * 0.6**2))
    weights /= weights.sum(axis=1, keepdims=True)
    field = weights @ grid @ weights.T
    field -= field.mean()
    return field / max(float(field.std()), 1e-9)


def _downsample(values: NDArray[np.float64], factor: int) -> NDArray[np.float64]:
    """Box-average ``factor`` x ``factor`` blocks."""
    if factor == 1:
        return values
    rows, cols = values.shape[0] // factor, values.shape[1] // factor
    return values.reshape(rows, factor, cols, factor, *values.shape[2:]).mean(axis=(1, 3))


def _gaussian_line(
    distance: NDArray[np.float64], width: NDArray[np.float64] | float, blur: float
) -> NDArray[np.float64]:
    """Opacity of a soft line of half-width ``width`` at ``distance`` from its centre.

    ``blur`` (same unit) widens the line and lowers its peak so that lines thinner than a
    pixel keep their average darkness instead of aliasing.
    """
    sigma = np.sqrt(np.square(width) + blur**2)
    return (width / sigma) * np.exp(-(distance**2) / (2 * sigma**2))


def _line_profile(
    coordinate: NDArray[np.float64], width: NDArray[np.float64] | float, blur: float
) -> NDArray[np.float64]:
    """Soft lines at the integer values of ``coordinate`` (half-width ``width``)."""
    return _gaussian_line(np.abs(coordinate - np.round(coordinate)), width, blur)


class _Canvas:
    """Draws primitives (image-frame millimetres) supersampled over a crop of the image.

    ``box`` is ``(row0, row1, col0, col1)`` in output pixels; masks come back at output
    resolution, box-downsampled from ``supersample`` times finer drawings.
    """

    def __init__(self, spec: PhantomSpec, box: tuple[int, int, int, int]) -> None:
        self.ss = spec.supersample
        self.mm_per_px = spec.mm_per_pixel
        self.sub_mm = self.mm_per_px / self.ss
        self.half = spec.field_of_view_mm / 2
        self.box = box

    def to_pixels(self, points_mm: NDArray[np.float64]) -> NDArray[np.float64]:
        """Image-frame millimetres -> supersampled pixel coordinates of the crop."""
        pixels = (points_mm + self.half) / self.sub_mm
        return pixels - self.ss * np.array([self.box[2], self.box[0]])

    def draw(
        self, layer: Layer, transform: tuple[float, float, float, float]
    ) -> NDArray[np.float64]:
        rows, cols = self.box[1] - self.box[0], self.box[3] - self.box[2]
        image = Image.new("L", (cols * self.ss, rows * self.ss), 0)
        pen = ImageDraw.Draw(image)
        cos_r, sin_r, ox, oy = transform
        for item in layer.primitives:
            pts = item.points
            world = np.stack(
                [
                    cos_r * pts[:, 0] - sin_r * pts[:, 1] + ox,
                    sin_r * pts[:, 0] + cos_r * pts[:, 1] + oy,
                ],
                axis=1,
            )
            px = self.to_pixels(world)
            min_sub = item.min_px * self.ss
            if item.kind == "disc":
                radius = max(item.size_mm / self.sub_mm, min_sub / 2)
                x, y = px[0]
                pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
            elif item.kind == "poly":
                extent = float(np.ptp(px, axis=0).max())
                if extent < min_sub:
                    x, y = px.mean(axis=0)
                    half = min_sub / 2
                    pen.ellipse([x - half, y - half, x + half, y + half], fill=255)
                else:
                    pen.polygon([tuple(p) for p in px], fill=255)
            else:
                width = max(1, round(max(item.size_mm / self.sub_mm, min_sub)))
                pen.line([tuple(p) for p in px], fill=255, width=width, joint="curve")
        mask = np.asarray(image, dtype=np.float64) / 255.0
        sigma = layer.blur_mm / self.sub_mm
        if sigma >= 0.3:
            mask = ndimage.gaussian_filter(mask, sigma)
        return _downsample(mask, self.ss) * layer.strength


def _render_lesion(
    spec: PhantomSpec,
    model: LesionModel,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    canvas: _Canvas,
    grain: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lesion colour offset (..., 3) at full contrast and its opacity, on a crop."""
    angle = math.radians(spec.lesion_rotation_deg)
    cos_r, sin_r = math.cos(angle), math.sin(angle)
    ox, oy = spec.lesion_offset_mm
    dx, dy = x - ox, y - oy
    lx = cos_r * dx + sin_r * dy  # image frame -> lesion frame (rotate by -angle)
    ly = -sin_r * dx + cos_r * dy
    rho = np.hypot(lx, ly)
    theta = np.arctan2(ly, lx)
    radius = model.radius_at(theta)
    edge = np.maximum(model.edge_at(theta), 0.8 * canvas.mm_per_px)
    alpha = expit((radius - rho) * 4.4 / edge)
    rho_n = rho / radius

    offset = np.broadcast_to(model.base, (*x.shape, 3)).copy()
    for layer in model.body:
        if layer.kind == "region":
            value = model.region_field(layer, lx, ly, rho_n)
            mask = np.clip((value - layer.threshold) / layer.softness + 0.5, 0.0, 1.0)
        else:  # network
            mask = np.zeros(x.shape)
            inside = alpha > 0.01
            if layer.seeds is not None and inside.any():
                points = np.stack([lx[inside], ly[inside]], axis=1)
                nearest, _ = layer.seeds.query(points, k=2)
                gap = 0.5 * (nearest[:, 1] - nearest[:, 0])  # distance to the cell edge
                width: NDArray[np.float64] | float = layer.width * layer.cell_mm
                if layer.width_jitter:
                    jitter = model.sample_noise(
                        COVER_CHANNEL, ly[inside], lx[inside]
                    )  # decorrelated
                    width = width * np.clip(1 + layer.width_jitter * jitter, 0.35, 2.2)
                mask[inside] = _gaussian_line(gap, width, 0.5 * canvas.mm_per_px)
            if layer.cover_threshold is None:
                mask = mask * (1 - np.clip((rho_n - 0.7) / 0.3, 0, 1))
            else:
                cover = model.sample_noise(COVER_CHANNEL, lx, ly)
                mask = mask * np.clip((cover - layer.cover_threshold) / 0.15 + 0.5, 0, 1)
        mask = (mask * layer.strength)[..., None]
        offset = offset * (1 - mask) + layer.delta * mask
    mottle = 1 + model.mottle * model.sample_noise(MOTTLE_CHANNEL, lx, ly) + 0.06 * grain
    profile = 1 - model.centre_fade * np.clip(rho_n, 0, 1) ** 2
    offset = offset * (alpha * mottle * profile)[..., None]

    transform = (cos_r, sin_r, ox, oy)
    for layer in model.stamps:
        mask = canvas.draw(layer, transform)
        if layer.clip:
            mask = mask * np.clip(alpha * 1.5, 0, 1)
        mask = mask[..., None]
        offset = offset * (1 - mask) + layer.delta * mask
    return offset, alpha


def _draw_hair(
    rng: np.random.Generator, spec: PhantomSpec, centre: tuple[float, float]
) -> NDArray[np.float64]:
    """Hair coverage (0..1) at output resolution, drawn supersampled."""
    ss = spec.supersample
    n = spec.image_size * ss
    image = Image.new("L", (n, n), 0)
    pen = ImageDraw.Draw(image)
    fov = spec.field_of_view_mm
    sub_mm = spec.mm_per_pixel / ss
    for _ in range(spec.hair_count):
        if rng.random() < 0.4:  # aimed across the lesion
            middle = np.array(centre) + rng.normal(0, 0.08 * fov, 2)
        else:
            middle = rng.uniform(-0.45 * fov, 0.45 * fov, 2)
        heading = rng.uniform(0, math.pi)
        length = rng.uniform(0.35, 1.2) * fov
        direction = np.array([math.cos(heading), math.sin(heading)])
        normal = np.array([-direction[1], direction[0]])
        start = middle - direction * length * rng.uniform(0.3, 0.7)
        end = start + direction * length
        control = (start + end) / 2 + normal * rng.normal(0, 0.12) * length
        t = np.linspace(0, 1, 24)[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        pixels = (curve + fov / 2) / sub_mm
        width = max(1, round(rng.uniform(0.05, 0.11) / sub_mm))
        pen.line(
            [tuple(p) for p in pixels], fill=int(rng.integers(200, 256)), width=width, joint="curve"
        )
    return _downsample(np.asarray(image, dtype=np.float64) / 255.0, ss)


def _skin_ita_shift(
    lightness: NDArray[np.float64], b_star: NDArray[np.float64], target: float
) -> float:
    """Lightness shift that brings the median ITA of the given pixels to ``target``."""
    if lightness.size == 0:
        return 0.0
    shift = 0.0
    for _ in range(6):
        ita = float(np.median(ita_degrees(lightness + shift, b_star)))
        error = math.radians(target - ita)
        if abs(error) < 1e-4:
            break
        level = float(np.median(lightness)) + shift - 50.0
        b_mid = float(np.median(b_star))
        slope = b_mid / (level**2 + b_mid**2)  # d(ITA)/d(L*) in radians, at the median pixel
        shift += float(np.clip(error / max(slope, 1e-4), -10.0, 10.0))
    return shift


def render_phantom(spec: PhantomSpec) -> PhantomRender:
    """Draw one phantom image.

    Smooth fields (skin, lesion body, network, outline) are evaluated analytically at the
    output resolution with anti-aliased edges; drawn strokes (hair, dots, vessels, streaks)
    are drawn ``spec.supersample`` times finer and box-downsampled.

    Args:
        spec: The image's spec, as produced by ``plan_phantom``.

    Returns:
        The RGB image (``spec.image_size`` square, uint8) and its ground-truth masks.
    """
    n = spec.image_size
    fov = spec.field_of_view_mm
    px_mm = spec.mm_per_pixel
    rng = np.random.default_rng(list(spec.image_seed))
    axis = (np.arange(n) + 0.5) * px_mm - fov / 2
    x, y = np.meshgrid(axis, axis)

    # Dermoscope field and lighting.
    circle_radius = 0.5 * fov * rng.uniform(1.1, 1.28)
    cx, cy = rng.normal(0, 0.02 * fov, 2)
    distance = np.hypot(x - cx, y - cy) / circle_radius
    field = np.clip((1 - distance) * circle_radius / px_mm + 0.5, 0.0, 1.0)

    # Skin in CIELAB.
    l0, a0, b0 = spec.skin_lab
    tone = l0 / 65.0
    low_l, low_a, low_b = (_smooth_noise(rng, n, 5) for _ in range(3))
    mid = _smooth_noise(rng, n, 18)
    fine = rng.standard_normal((3, n, n))
    # Darker skin is more unevenly pigmented: the blotchiness grows with the skin type.
    uneven = 1.3 + 0.35 * (spec.fst - 1)
    lightness = l0 + uneven * low_l + 0.5 * mid + 1.2 * fine[0]
    a_star = a0 + 0.8 * low_a + 0.3 * fine[1]
    b_star = b0 + 0.8 * uneven / 1.3 * low_b + 0.3 * fine[2]
    # Pores: sparse dark dots about 0.08 mm across, ~2 per square millimetre.
    n_pores = int(rng.poisson(2.0 * fov * fov))
    rows = rng.integers(0, n, n_pores)
    cols = rng.integers(0, n, n_pores)
    pores = np.zeros((n, n))
    np.add.at(pores, (rows, cols), min(1.0, (0.08 / px_mm) ** 2))
    lightness -= 4.0 * tone * np.minimum(pores, 1.0)
    # Skin furrows: a faint, warped, wide-meshed line pattern.
    furrow_angle = rng.uniform(0, math.pi)
    furrow_period = rng.uniform(0.9, 1.6)
    warp = 0.35 * mid
    u = (x * math.cos(furrow_angle) + y * math.sin(furrow_angle)) / furrow_period + warp
    v = (x * math.cos(furrow_angle + 1.2) + y * math.sin(furrow_angle + 1.2)) / furrow_period - warp
    blur = 0.5 * px_mm / furrow_period
    furrows = np.maximum(_line_profile(u, 0.05, blur), _line_profile(v, 0.05, blur))
    lightness -= 1.5 * tone * furrows
    # A faint physiological pigment network, visible on FST IV-VI as on real dark skin.
    net_angle = rng.uniform(0, math.pi)
    net_period = rng.uniform(0.35, 0.5)
    u = (x * math.cos(net_angle) + y * math.sin(net_angle)) / net_period + 0.6 * low_a
    v = (x * math.cos(net_angle + 1.4) + y * math.sin(net_angle + 1.4)) / net_period + 0.6 * low_b
    blur = 0.5 * px_mm / net_period
    physiological = np.maximum(_line_profile(u, 0.12, blur), _line_profile(v, 0.12, blur))
    net_strength = 1.4 * max(0, spec.fst - 3)
    lightness -= net_strength * physiological
    b_star += 0.3 * net_strength * physiological
    # Vignetting, a lighting gradient and a soft specular sheen.
    lightness -= rng.uniform(4, 9) * tone * distance**4
    light_angle = rng.uniform(0, 2 * math.pi)
    gradient = (x * math.cos(light_angle) + y * math.sin(light_angle)) / (fov / 2)
    lightness += rng.uniform(0, 2.5) * tone * gradient
    sheen_x, sheen_y = rng.uniform(-0.3, 0.3, 2) * fov
    sheen_size = rng.uniform(0.15, 0.3) * fov
    lightness += rng.uniform(0, 3) * np.exp(
        -((x - sheen_x) ** 2 + (y - sheen_y) ** 2) / (2 * sheen_size**2)
    )

    # Lesion, on a crop around it.
    model = _lesion_for(spec)
    ox, oy = spec.lesion_offset_mm
    reach = model.reach_mm
    col0 = max(0, int(math.floor((ox - reach + fov / 2) / px_mm)))
    col1 = min(n, int(math.ceil((ox + reach + fov / 2) / px_mm)))
    row0 = max(0, int(math.floor((oy - reach + fov / 2) / px_mm)))
    row1 = min(n, int(math.ceil((oy + reach + fov / 2) / px_mm)))
    offset = np.zeros((n, n, 3))
    alpha = np.zeros((n, n))
    if col1 > col0 and row1 > row0:
        canvas = _Canvas(spec, (row0, row1, col0, col1))
        crop = (slice(row0, row1), slice(col0, col1))
        grain = ndimage.gaussian_filter(fine[0][crop], 0.6)  # pigment granularity
        crop_offset, crop_alpha = _render_lesion(
            spec, model, x[crop], y[crop], canvas, grain / 0.45
        )
        offset[crop] = crop_offset * spec.contrast
        alpha[crop] = crop_alpha

    hair = _draw_hair(rng, spec, (ox, oy)) if spec.hair_count else np.zeros((n, n))
    hair_lab = np.array([rng.uniform(8, 25), rng.uniform(1, 5), rng.uniform(2, 10)])

    # Masks.
    field_mask = field >= 0.999
    lesion_mask = (alpha >= 0.5) & (field >= 0.5)
    hair_mask = hair > 0.02
    touched = (offset**2).sum(axis=-1) > 0.25  # the lesion moves the colour by > 0.5 dE
    skin_mask = field_mask & ~hair_mask & ~touched & ~lesion_mask

    # Calibrate the skin so that its median ITA is the drawn one.
    lightness += _skin_ita_shift(lightness[skin_mask], b_star[skin_mask], spec.ita)

    lab = np.stack([lightness, a_star, b_star], axis=-1) + offset
    lab[..., 0] = np.clip(lab[..., 0], 2.0, 98.0)
    cover = (hair * 0.92)[..., None]
    lab = lab * (1 - cover) + hair_lab * cover
    field3 = field[..., None]
    outside = np.broadcast_to(_OUTSIDE_LAB, (n, n, 3)).copy()
    outside[..., 0] += rng.normal(0, 0.4, (n, n))
    lab = lab * field3 + outside * (1 - field3)
    pixels = np.clip(np.rint(lab_to_srgb(lab) * 255.0), 0, 255).astype(np.uint8)
    return PhantomRender(
        image=Image.fromarray(pixels),
        lesion_mask=lesion_mask,
        skin_mask=skin_mask,
        hair_mask=hair_mask,
        field_mask=field_mask,
    )

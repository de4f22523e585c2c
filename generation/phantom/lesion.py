"""The drawn lesion: outline (A and B of ABCD), colour regions (C) and structures.

A lesion is built in its own frame, in millimetres, from ``PhantomSpec.lesion_seed`` alone,
so every image of the lesion (and every image size) shows the same lesion. ``render.py``
places it in the image (rotation, offset) and evaluates it on the pixel grid.

Outline: a polar radius ``r(theta)``. Symmetric harmonics (``cos 2k theta``) keep it
mirror-symmetric about both lesion axes; ``cos theta``/``cos 3 theta`` terms and a lobe on the
x-axis break the symmetry about the y-axis only (one axis of asymmetry); ``sin`` terms and
an off-axis lobe break both (two axes). The colour regions follow the same symmetry: their
noise is mirrored across the symmetric axes and their mass is shifted along the broken ones.
Border: each of the 8 segments of 45 degrees is either regular (smooth radius, gradual
fade-out over ~20 % of the radius) or irregular (jagged radius, abrupt cut-off).
The outline is scaled so that its largest diameter (Feret diameter) equals
``PhantomSpec.diameter_mm``.

Colours are CIELAB *differences from the skin* (``PALETTE``); the renderer multiplies the
whole lesion by the skin type's contrast factor before adding it to the skin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from generation.phantom.spec import PhantomSpec

#: CIELAB difference from the skin of each dermoscopic colour at full contrast (FST I).
PALETTE: dict[str, tuple[float, float, float]] = {
    "white": (17.0, -6.0, -11.0),
    "red": (-16.0, 34.0, 10.0),
    "light_brown": (-15.0, 5.0, 13.0),
    "dark_brown": (-33.0, 7.0, 8.0),
    "blue_grey": (-22.0, -9.0, -22.0),
    "black": (-55.0, -2.0, -6.0),
}
#: Translucent pink-white background of a BCC (not one of the six colours).
PINK: tuple[float, float, float] = (5.0, 11.0, -3.0)

N_THETA = 720
GRID = 48
_N_NOISE = 6
# noise channels
_REGION_CHANNELS = (0, 1, 2, 3)
MOTTLE_CHANNEL, COVER_CHANNEL = 4, 5


@dataclass
class Primitive:
    """A shape drawn into a stamp layer, in lesion-frame millimetres."""

    kind: str  # "disc", "poly" or "line"
    points: NDArray[np.float64]  # (k, 2)
    size_mm: float = 0.0  # disc radius or line width
    min_px: float = 1.0  # smallest disc diameter or line width, in output pixels


@dataclass
class Layer:
    """One paint layer: ``lesion = lesion * (1 - mask) + delta * mask``."""

    kind: str  # "region", "network" or "stamps"
    delta: NDArray[np.float64]
    strength: float = 1.0
    # region
    channel: int = 0
    mirror: int = 0
    noise: float = 1.0
    radial: float = 0.0
    shift: float = 0.0
    threshold: float = 0.0
    softness: float = 0.1
    # network: lines along the edges of the Voronoi cells of `seeds`
    seeds: cKDTree | None = None
    cell_mm: float = 0.45
    width: float = 0.11  # line half-width, as a fraction of the cell size
    width_jitter: float = 0.0
    cover_threshold: float | None = None
    # stamps
    primitives: list[Primitive] = field(default_factory=list)
    blur_mm: float = 0.0
    clip: bool = True


@dataclass
class LesionModel:
    """Everything needed to evaluate a lesion at any point of its frame."""

    radius: NDArray[np.float64]  # (N_THETA,) mm
    edge: NDArray[np.float64]  # (N_THETA,) fade width in mm
    r_max: float
    r_mean: float
    noise: NDArray[np.float64]  # (_N_NOISE, GRID, GRID)
    half_extent: float
    shift_dir: tuple[float, float]
    base: NDArray[np.float64]
    body: list[Layer]
    stamps: list[Layer]
    mottle: float
    centre_fade: float

    @property
    def reach_mm(self) -> float:
        """Distance from the centre beyond which the lesion adds nothing."""
        return 1.35 * self.r_max + float(self.edge.max()) + 0.3

    def radius_at(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Outline radius (mm) at lesion-frame angles ``theta`` (radians)."""
        return _periodic_interp(self.radius, theta)

    def edge_at(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Width (mm) of the edge's fade-out at angles ``theta``."""
        return _periodic_interp(self.edge, theta)

    def sample_noise(
        self, channel: int, x: NDArray[np.float64], y: NDArray[np.float64], mirror: int = 0
    ) -> NDArray[np.float64]:
        """Smooth zero-mean noise of one channel at lesion-frame points (mirrored if asked)."""
        if mirror >= 1:
            y = np.abs(y)
        if mirror >= 2:
            x = np.abs(x)
        scale = (GRID - 1) / (2 * self.half_extent)
        coords = np.stack(
            [((y + self.half_extent) * scale).ravel(), ((x + self.half_extent) * scale).ravel()]
        )
        values = ndimage.map_coordinates(self.noise[channel], coords, order=1, mode="nearest")
        return values.reshape(x.shape)

    def region_field(
        self,
        layer: Layer,
        x: NDArray[np.float64],
        y: NDArray[np.float64],
        rho_n: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        value = layer.noise * self.sample_noise(layer.channel, x, y, layer.mirror)
        if layer.radial:
            value = value - layer.radial * rho_n
        if layer.shift:
            sx, sy = self.shift_dir
            value = value + layer.shift * (x * sx + y * sy) / self.r_mean
        return value


def _periodic_interp(table: NDArray[np.float64], theta: NDArray[np.float64]) -> NDArray[np.float64]:
    position = np.mod(theta, 2 * math.pi) * (table.size / (2 * math.pi))
    low = np.floor(position).astype(np.int64)
    frac = position - low
    low %= table.size
    high = (low + 1) % table.size
    return table[low] * (1 - frac) + table[high] * frac


def _angle_distance(a: NDArray[np.float64], b: float) -> NDArray[np.float64]:
    return np.abs((a - b + math.pi) % (2 * math.pi) - math.pi)


def _outline(
    rng: np.random.Generator, asymmetry: int, irregular: tuple[int, ...], diameter: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[float, float]]:
    theta = np.linspace(0, 2 * math.pi, N_THETA, endpoint=False)
    r = 1 + rng.uniform(0.02, 0.16) * np.cos(2 * theta)
    for k in (4, 6):
        r += rng.uniform(-0.025, 0.025) * np.cos(k * theta)
    shift = (0.0, 0.0)
    if asymmetry >= 1:
        sign = 1.0 if rng.random() < 0.5 else -1.0
        r += sign * rng.uniform(0.07, 0.14) * np.cos(theta) + rng.uniform(-0.05, 0.05) * np.cos(
            3 * theta
        )
        if rng.random() < 0.5:
            centre = 0.0 if sign > 0 else math.pi
            r += rng.uniform(0.1, 0.22) * np.exp(
                -(_angle_distance(theta, centre) ** 2) / (2 * 0.35**2)
            )
        shift = (sign, 0.0)
    if asymmetry >= 2:
        sign = 1.0 if rng.random() < 0.5 else -1.0
        r += sign * rng.uniform(0.07, 0.14) * np.sin(theta)
        r += rng.uniform(-0.05, 0.05) * np.sin(2 * theta) + rng.uniform(-0.05, 0.05) * np.sin(
            3 * theta
        )
        lobe = math.radians(rng.uniform(20, 70) + 90 * int(rng.integers(4)))
        r += rng.uniform(0.12, 0.25) * np.exp(-(_angle_distance(theta, lobe) ** 2) / (2 * 0.35**2))
        beta = (
            math.radians(rng.uniform(25, 65))
            if shift[0] > 0
            else math.radians(rng.uniform(115, 155))
        )
        shift = (math.cos(beta), sign * math.sin(beta))
    # Border: irregular segments get a jagged radius and an abrupt edge.
    segment = np.minimum((theta // (math.pi / 4)).astype(np.int64), 7)
    envelope = np.isin(segment, irregular).astype(np.float64)
    envelope = ndimage.gaussian_filter1d(envelope, sigma=N_THETA / 120, mode="wrap")
    orders = np.arange(4, 19, dtype=np.float64)
    amplitudes = rng.normal(0, 1.0, orders.size) / orders
    phases = rng.uniform(0, 2 * math.pi, orders.size)
    jag = (amplitudes[:, None] * np.cos(orders[:, None] * theta[None, :] + phases[:, None])).sum(
        axis=0
    )
    jag /= max(float(jag.std()), 1e-9)
    notches = np.zeros_like(theta)
    for s in irregular:
        if rng.random() < 0.5:
            centre = math.radians(45 * s + rng.uniform(8, 37))
            notches += rng.uniform(0.04, 0.09) * np.exp(
                -(_angle_distance(theta, centre) ** 2) / (2 * 0.07**2)
            )
    r = r + envelope * (0.045 * jag - notches) + (1 - envelope) * 0.008 * jag
    r = np.clip(r, 0.35, None)
    edge = 0.035 * envelope + 0.22 * (1 - envelope)
    # Scale so that the largest diameter (Feret) is `diameter`.
    points = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)[::4]
    feret = float(np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)).max())
    scale = diameter / feret
    return r * scale, edge * scale, shift


def _smooth_grid(rng: np.random.Generator, sigma_cells: float) -> NDArray[np.float64]:
    grid = ndimage.gaussian_filter(rng.standard_normal((GRID, GRID)), sigma_cells, mode="reflect")
    grid -= grid.mean()
    return grid / max(float(grid.std()), 1e-9)


class _Builder:
    """Collects the layers of one lesion; helpers sample points and region thresholds."""

    def __init__(self, spec: PhantomSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        self.radius, self.edge, self.shift_dir = _outline(
            rng, spec.asymmetry_axes, spec.irregular_segments, spec.diameter_mm
        )
        self.r_max = float(self.radius.max())
        self.r_mean = float(self.radius.mean())
        half = 1.35 * self.r_max + 0.6
        cell = 2 * half / (GRID - 1)
        noise = np.empty((_N_NOISE, GRID, GRID))
        for channel in _REGION_CHANNELS:
            noise[channel] = _smooth_grid(rng, 0.22 * self.r_mean / cell)
        noise[MOTTLE_CHANNEL] = _smooth_grid(rng, max(0.12 * self.r_mean / cell, 1.0))
        noise[COVER_CHANNEL] = _smooth_grid(rng, 0.2 * self.r_mean / cell)
        self.mirror = 2 - min(spec.asymmetry_axes, 2)
        jitter = {name: rng.uniform(0.9, 1.1) for name in PALETTE}
        self.delta = {name: np.array(PALETTE[name]) * jitter[name] for name in PALETTE}
        self.model = LesionModel(
            radius=self.radius,
            edge=self.edge,
            r_max=self.r_max,
            r_mean=self.r_mean,
            noise=noise,
            half_extent=half,
            shift_dir=self.shift_dir,
            base=self.delta["light_brown"],
            body=[],
            stamps=[],
            mottle=0.1,
            centre_fade=float(rng.uniform(0.0, 0.2)),
        )
        # Lesion-frame sample points inside the outline, for region thresholds.
        axis = np.linspace(-self.r_max, self.r_max, 48)
        gx, gy = np.meshgrid(axis, axis)
        rho = np.hypot(gx, gy)
        inside = rho < self.model.radius_at(np.arctan2(gy, gx))
        self.sample_x, self.sample_y = gx[inside], gy[inside]
        self.sample_rho_n = rho[inside] / self.model.radius_at(
            np.arctan2(self.sample_y, self.sample_x)
        )

    # -- helpers ---------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self.spec.colours or name in self.spec.structures

    def region(
        self,
        delta: NDArray[np.float64],
        fraction: float,
        channel: int,
        *,
        radial: float = 0.0,
        shift: float | None = None,
        noise: float | None = None,
        softness: float = 0.5,
    ) -> Layer:
        """A colour region covering about ``fraction`` of the lesion."""
        symmetric = self.spec.asymmetry_axes == 0
        layer = Layer(
            kind="region",
            delta=delta,
            channel=channel,
            mirror=self.mirror,
            noise=(0.3 if symmetric else 1.0) if noise is None else noise,
            radial=radial,
            shift=(0.0 if symmetric else 1.2) if shift is None else shift,
        )
        values = self.model.region_field(layer, self.sample_x, self.sample_y, self.sample_rho_n)
        layer.threshold = float(np.quantile(values, 1 - fraction))
        layer.softness = max(softness * float(values.std()), 1e-6)
        self.model.body.append(layer)
        return layer

    def in_region(
        self, layer: Layer, x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> NDArray[np.bool_]:
        rho = np.hypot(x, y)
        rho_n = rho / self.model.radius_at(np.arctan2(y, x))
        return self.model.region_field(layer, x, y, rho_n) > layer.threshold

    def points(
        self,
        n: int,
        rho_range: tuple[float, float] = (0.0, 0.85),
        bias: float = 0.0,
    ) -> NDArray[np.float64]:
        """``n`` lesion-frame points with normalised radius in ``rho_range``.

        ``bias`` > 0 favours the side the colour mass is shifted to.
        """
        found: list[NDArray[np.float64]] = []
        total = 0
        for _ in range(40):
            candidates = self.rng.uniform(-self.r_max, self.r_max, size=(4 * n + 8, 2))
            rho = np.hypot(candidates[:, 0], candidates[:, 1])
            rho_n = rho / self.model.radius_at(np.arctan2(candidates[:, 1], candidates[:, 0]))
            keep = (rho_n >= rho_range[0]) & (rho_n <= rho_range[1])
            if bias and any(self.shift_dir):
                side = (
                    candidates[:, 0] * self.shift_dir[0] + candidates[:, 1] * self.shift_dir[1]
                ) / self.r_max
                keep &= self.rng.random(len(candidates)) < 0.5 + bias * side
            found.append(candidates[keep])
            total += int(keep.sum())
            if total >= n:
                break
        return np.concatenate(found)[:n] if found else np.zeros((0, 2))

    def stamps(self, delta: NDArray[np.float64], blur_mm: float = 0.0, clip: bool = True) -> Layer:
        layer = Layer(kind="stamps", delta=delta, blur_mm=blur_mm, clip=clip)
        self.model.stamps.append(layer)
        return layer

    def radius_of(self, theta: float) -> float:
        """The outline radius (mm) at one angle (a scalar fast path of ``radius_at``)."""
        position = (theta % (2 * math.pi)) * (N_THETA / (2 * math.pi))
        low = int(position) % N_THETA
        frac = position - math.floor(position)
        return float(self.radius[low] * (1 - frac) + self.radius[(low + 1) % N_THETA] * frac)

    def polar_point(self, theta: float, rho_n: float) -> NDArray[np.float64]:
        radius = self.radius_of(theta) * rho_n
        return np.array([radius * math.cos(theta), radius * math.sin(theta)])

    def inside(self, point: NDArray[np.float64], limit: float = 0.95) -> bool:
        x, y = float(point[0]), float(point[1])
        return math.hypot(x, y) < limit * self.radius_of(math.atan2(y, x))

    def random_walk(
        self, start: NDArray[np.float64], heading: float, steps: int, step_mm: float, turn: float
    ) -> NDArray[np.float64]:
        points = [start]
        for _ in range(steps):
            heading += self.rng.normal(0, turn)
            nxt = points[-1] + step_mm * np.array([math.cos(heading), math.sin(heading)])
            if not self.inside(nxt):
                break
            points.append(nxt)
        return np.array(points)

    def ellipse(
        self, centre: NDArray[np.float64], a: float, b: float, angle: float, wobble: float = 0.0
    ) -> NDArray[np.float64]:
        t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        radius = 1 + wobble * self.rng.uniform(-1, 1, size=t.size)
        x, y = a * radius * np.cos(t), b * radius * np.sin(t)
        c, s = math.cos(angle), math.sin(angle)
        return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], axis=1)

    def network(self, delta: NDArray[np.float64], *, typical: bool) -> Layer:
        """A pigment network: the edges of jittered Voronoi cells (a honeycomb of lines).

        A typical network has even cells and thin, even lines that fade towards the
        periphery; an atypical one has uneven cells, thick and thin lines, and stops
        abruptly in patches.
        """
        rng = self.rng
        cell = float(rng.uniform(0.4, 0.55) if typical else rng.uniform(0.4, 0.75))
        extent = 1.1 * self.r_max
        axis = np.arange(-extent, extent + cell, cell)
        gx, gy = np.meshgrid(axis, axis)
        seeds = np.stack([gx.ravel(), gy.ravel()], axis=1)
        seeds += rng.uniform(-1, 1, seeds.shape) * cell * (0.3 if typical else 0.45)
        if not typical:  # missing seeds leave large, irregular holes
            seeds = seeds[rng.random(len(seeds)) > 0.2]
        layer = Layer(
            kind="network",
            delta=delta,
            strength=float(rng.uniform(0.65, 0.85)),
            seeds=cKDTree(seeds),
            cell_mm=cell,
            width=0.09 if typical else 0.11,
            width_jitter=0.0 if typical else 0.6,
        )
        if not typical:
            values = self.model.sample_noise(COVER_CHANNEL, self.sample_x, self.sample_y)
            layer.cover_threshold = float(np.quantile(values, rng.uniform(0.3, 0.5)))
        self.model.body.append(layer)
        return layer


def _nevus(b: _Builder) -> None:
    d, rng = b.delta, b.rng
    light, dark = b.has("light_brown"), b.has("dark_brown")
    if light and not dark:
        b.model.base = d["light_brown"]
        line, dot = d["light_brown"] * 1.45, d["light_brown"] * 1.5
    else:
        b.model.base = d["light_brown"] if light else d["dark_brown"]
        line, dot = d["dark_brown"] * 1.2, d["dark_brown"] * 1.25
    if light and dark:
        b.region(d["dark_brown"], rng.uniform(0.25, 0.45), 0, radial=2.5)
    b.model.mottle = 0.06 if b.has("structureless") else 0.1
    if b.has("pigment_network"):
        b.network(line, typical=True)
    if b.has("dots_globules"):
        layer = b.stamps(dot, blur_mm=0.03)
        radius = rng.uniform(0.09, 0.14)
        rim = rng.random() < 0.4
        n = int(np.clip(b.r_mean**2 * (1.2 if rim else 2.0), 6, 45))
        for p in b.points(n, (0.65, 0.9) if rim else (0.0, 0.8)):
            layer.primitives.append(Primitive("disc", p[None], radius * rng.uniform(0.9, 1.1), 1.0))


def _melanoma(b: _Builder) -> None:
    d, rng = b.delta, b.rng
    light = b.has("light_brown")
    b.model.base = d["light_brown"] if light else d["dark_brown"]
    b.model.mottle = 0.14
    if light:
        b.region(d["dark_brown"], rng.uniform(0.3, 0.5), 0, radial=0.8)
    if b.has("atypical_network"):
        b.network(d["dark_brown"] * 1.15, typical=False)
    if b.has("red"):
        red_area = b.region(d["red"] * 0.85, rng.uniform(0.06, 0.12), 3, radial=-0.5)
        layer = b.stamps(d["red"], blur_mm=0.02)
        points = b.points(60, (0.1, 0.9))
        points = points[b.in_region(red_area, points[:, 0], points[:, 1])][:14]
        for p in np.concatenate([points, b.points(4, (0.2, 0.8))]):
            layer.primitives.append(Primitive("disc", p[None], rng.uniform(0.05, 0.08), 0.9))
    if b.has("blue_grey"):
        if b.has("blue_white_veil"):
            veil = 0.7 * d["blue_grey"] + 0.3 * d["white"]
            b.region(veil, rng.uniform(0.1, 0.22), 2, softness=0.8)
        else:
            b.region(d["blue_grey"], rng.uniform(0.08, 0.18), 2, softness=0.8)
    if b.has("white"):
        regression = b.region(d["white"], rng.uniform(0.06, 0.14), 1, radial=-0.3, softness=0.6)
        regression.strength = 0.85
        if b.has("blue_grey"):
            layer = b.stamps(d["blue_grey"] * 0.9, blur_mm=0.02)
            points = b.points(200, (0.0, 0.95))
            points = points[b.in_region(regression, points[:, 0], points[:, 1])][:25]
            for p in points:
                layer.primitives.append(Primitive("disc", p[None], rng.uniform(0.03, 0.06), 0.7))
    if b.has("blotch"):
        b.region(d["black"], rng.uniform(0.05, 0.12), 3, radial=0.3, shift=1.8, softness=0.35)
    if b.has("irregular_dots_globules"):
        black_dots = b.has("black") and (not b.has("blotch") or rng.random() < 0.5)
        layer = b.stamps(d["black"] if black_dots else d["dark_brown"] * 1.2, blur_mm=0.02)
        n = int(rng.integers(10, 36))
        for p in b.points(n, (0.35, 0.97), bias=0.4):
            layer.primitives.append(Primitive("disc", p[None], rng.uniform(0.04, 0.2), 0.9))
    if b.has("streaks"):
        colour = d["black"] if b.has("black") and rng.random() < 0.4 else d["dark_brown"] * 1.15
        layer = b.stamps(colour, blur_mm=0.06, clip=False)
        layer.strength = 0.85
        segments = b.spec.irregular_segments or tuple(
            int(s) for s in rng.choice(8, 2, replace=False)
        )
        for s in segments[: int(rng.integers(1, len(segments) + 1))]:
            for _ in range(int(rng.integers(2, 6))):
                theta = math.radians(45 * s + rng.uniform(3, 42))
                base, tip = (
                    b.polar_point(theta, 0.85),
                    b.polar_point(theta, rng.uniform(1.08, 1.22)),
                )
                along = (tip - base) / max(float(np.hypot(*(tip - base))), 1e-9)
                across = np.array([-along[1], along[0]])
                half_base, half_tip = rng.uniform(0.1, 0.16), rng.uniform(0.04, 0.07)
                wedge = np.stack(
                    [
                        base + across * half_base,
                        tip + across * half_tip,
                        tip - across * half_tip,
                        base - across * half_base,
                    ]
                )
                layer.primitives.append(Primitive("poly", wedge, min_px=1.0))
                if rng.random() < 0.5:  # pseudopod: a bulb at the tip
                    layer.primitives.append(
                        Primitive("disc", tip[None], rng.uniform(0.08, 0.12), 1.0)
                    )


def _bcc(b: _Builder) -> None:
    d, rng = b.delta, b.rng
    b.model.base = np.array(PINK) * rng.uniform(0.8, 1.2)
    b.model.mottle = 0.12
    if b.has("white"):
        b.region(d["white"], rng.uniform(0.12, 0.25), 1, softness=0.15)
    if b.has("leaf_like_areas"):
        colours = [name for name in ("light_brown", "dark_brown") if b.has(name)]
        for i in range(int(rng.integers(max(2, len(colours)), 5))):
            layer = b.stamps(d[colours[i % len(colours)]], blur_mm=0.05)
            theta = rng.uniform(0, 2 * math.pi)
            centre = b.polar_point(theta, rng.uniform(0.6, 0.8))
            size = rng.uniform(0.45, 1.0)
            leaf = b.ellipse(centre, size, size * rng.uniform(0.45, 0.7), theta, wobble=0.15)
            layer.primitives.append(Primitive("poly", leaf))
    if b.has("ovoid_nests"):
        layer = b.stamps(d["blue_grey"], blur_mm=0.1)
        for p in b.points(int(rng.integers(2, 6)), (0.0, 0.7)):
            a = rng.uniform(0.35, 0.9)
            layer.primitives.append(
                Primitive(
                    "poly",
                    b.ellipse(p, a, a * rng.uniform(0.5, 0.8), rng.uniform(0, math.pi), 0.08),
                )
            )
        for p in b.points(int(rng.integers(3, 9)), (0.0, 0.85)):
            layer.primitives.append(Primitive("disc", p[None], rng.uniform(0.1, 0.16), 1.0))
    if b.has("ulceration"):
        layer = b.stamps(0.7 * d["dark_brown"] + 0.3 * d["red"], blur_mm=0.04)
        centre = b.points(1, (0.0, 0.4))
        if len(centre):
            size = rng.uniform(0.4, 0.9)
            layer.primitives.append(
                Primitive(
                    "poly", b.ellipse(centre[0], size, size * 0.7, rng.uniform(0, math.pi), 0.3)
                )
            )
    # Arborizing vessels: branching red lines in sharp focus.
    layer = b.stamps(d["red"], blur_mm=0.0)
    pending: list[tuple[NDArray[np.float64], float, float, int]] = []
    for _ in range(int(rng.integers(2, 5))):
        theta = rng.uniform(0, 2 * math.pi)
        start = b.polar_point(theta, rng.uniform(0.5, 0.85))
        pending.append((start, theta + math.pi + rng.normal(0, 0.5), rng.uniform(0.1, 0.16), 0))
    while pending:
        start, heading, width, depth = pending.pop()
        steps = int(rng.integers(4, 10)) if depth else int(rng.integers(8, 16))
        path = b.random_walk(start, heading, steps, 0.22 * (0.7**depth), 0.35)
        if len(path) < 2:
            continue
        layer.primitives.append(Primitive("line", path, width, 1.0))
        if depth < 3:
            for k in range(1, len(path) - 1):
                if rng.random() < 0.22:
                    turn = rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
                    step = path[k + 1] - path[k]
                    pending.append(
                        (path[k], math.atan2(step[1], step[0]) + turn, width * 0.7, depth + 1)
                    )


def _seborrheic_keratosis(b: _Builder) -> None:
    d, rng = b.delta, b.rng
    light, dark = b.has("light_brown"), b.has("dark_brown")
    b.model.base = d["light_brown"] if light else d["dark_brown"]
    b.model.mottle = 0.25
    if light and dark:
        b.region(
            d["dark_brown"],
            rng.uniform(0.25, 0.45),
            0,
            noise=1.0,
            shift=0.0 if b.spec.asymmetry_axes == 0 else 0.6,
            softness=0.25,
        )
    if b.has("fissures_ridges"):
        layer = b.stamps(d["dark_brown"] * 1.1, blur_mm=0.04)
        for p in b.points(int(rng.integers(4, 11)), (0.0, 0.8)):
            path = b.random_walk(p, rng.uniform(0, 2 * math.pi), int(rng.integers(4, 10)), 0.2, 0.6)
            if len(path) >= 2:
                layer.primitives.append(Primitive("line", path, rng.uniform(0.1, 0.18), 1.0))
    if b.has("comedo_like_openings"):
        layer = b.stamps(d["black"] if b.has("black") else d["dark_brown"] * 1.25, blur_mm=0.03)
        for p in b.points(int(rng.integers(4, 15)), (0.0, 0.85)):
            a = rng.uniform(0.08, 0.18)
            layer.primitives.append(
                Primitive(
                    "poly",
                    b.ellipse(p, a, a * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)),
                    min_px=1.0,
                )
            )
    if b.has("milia_like_cysts"):
        layer = b.stamps(d["white"] + np.array([0.0, 0.0, 4.0]), blur_mm=0.03)
        for p in b.points(int(rng.integers(4, 16)), (0.0, 0.85)):
            layer.primitives.append(Primitive("disc", p[None], rng.uniform(0.08, 0.16), 1.5))


_RECIPES = {
    "nevus": _nevus,
    "melanoma": _melanoma,
    "bcc": _bcc,
    "seborrheic_keratosis": _seborrheic_keratosis,
}


def build_lesion(spec: PhantomSpec) -> LesionModel:
    """Build the lesion of ``spec`` in its own frame (millimetres, centred on the lesion).

    Args:
        spec: The image spec; only lesion-level fields and ``lesion_seed`` are used, so all
            images of a lesion get the same model.

    Returns:
        The lesion model the renderer evaluates.
    """
    rng = np.random.default_rng(list(spec.lesion_seed))
    builder = _Builder(spec, rng)
    _RECIPES[spec.diagnosis](builder)
    return builder.model

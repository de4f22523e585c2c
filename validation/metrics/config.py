"""The config of an evaluation: which metrics, on which backbone, with which parameters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from validation.checks import check_float, check_int

METRICS: tuple[str, ...] = ("fid", "kid", "is", "lpips", "tone", "memorization")
#: pytorch-fid's feature sizes (InceptionV3 blocks 0-3; 2048 is the standard pool3 FID).
FID_DIMS: tuple[int, ...] = (64, 192, 768, 2048)
LPIPS_NETS: tuple[str, ...] = ("alex", "vgg", "squeeze")
REAL_SPLITS: tuple[str, ...] = ("test", "val", "train", "all")


@dataclass(frozen=True)
class MetricsConfig:
    """Parameters of ``validation.metrics.evaluate()`` (and of ``evaluate`` runs).

    Args:
        metrics: Which of fid, kid, is, lpips, tone, memorization to compute.
        real_split: Split of the real datasets used as the reference (``evaluate`` runs;
            ``all`` takes every split).
        fid_dims: Inception feature size for FID/KID (pytorch-fid's ``--dims``; 2048 is the
            published FID, the lower ones are global-average-pooled earlier blocks).
        batch_size: Images per forward pass of the backbones.
        kid_subsets: Number of random subsets KID averages over.
        kid_subset_size: Images per KID subset (clipped to the smaller set's size).
        is_splits: Inception Score splits (mean and std over them).
        lpips_net: LPIPS trunk (``alex`` is the default of the lpips package).
        lpips_size: Side images are bilinearly resized to before LPIPS (0 keeps their size).
        diversity_pairs: At most this many random pairs per FST x diagnosis cell for the
            LPIPS diversity (all pairs when there are fewer).
        collapse_ratio: Mode-collapse alarm when a cell's synthetic diversity is below this
            fraction of the real diversity of the same cell.
        memorization_lpips: A synthetic image whose nearest training image is closer than
            this LPIPS distance is flagged ...
        memorization_ratio: ... if that distance is also below this fraction of the distance
            from that training image to its own nearest other training image.
        memorization_pixel: An image closer than this pixel RMSE (0..1 scale, at 32 x 32) to
            a training image is flagged too.
        tone_tolerance: Types of difference that count as a pass for tone fidelity.
        min_group_size: Per-FST and per-diagnosis groups with fewer images on either side
            get no FID/KID (reported with the reason).
        seed: Seed of KID subsets and diversity pairs.
        torch_home: Folder holding ``hub/checkpoints/<weights>``; blank for ``$TORCH_HOME``.
    """

    metrics: tuple[str, ...] = METRICS
    real_split: str = "test"
    fid_dims: int = 2048
    batch_size: int = 50
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    is_splits: int = 10
    lpips_net: str = "alex"
    lpips_size: int = 64
    diversity_pairs: int = 2000
    collapse_ratio: float = 0.5
    memorization_lpips: float = 0.05
    memorization_ratio: float = 0.5
    memorization_pixel: float = 0.02
    tone_tolerance: int = 1
    min_group_size: int = 2
    seed: int = 0
    torch_home: str = ""

    PRESETS: ClassVar[tuple[str, ...]] = ("standard", "quick-64d")

    def __post_init__(self) -> None:
        metrics = self.metrics
        if isinstance(metrics, str):
            metrics = tuple(part.strip() for part in metrics.split(",") if part.strip())
        if not isinstance(metrics, (tuple, list)) or not metrics:
            raise ValueError(f"metrics: give at least one of {', '.join(METRICS)}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"metrics: unknown {unknown} (known: {', '.join(METRICS)})")
        object.__setattr__(self, "metrics", tuple(m for m in METRICS if m in metrics))
        if self.real_split not in REAL_SPLITS:
            raise ValueError(
                f"real_split: must be one of {', '.join(REAL_SPLITS)}, got {self.real_split!r}"
            )
        if self.fid_dims not in FID_DIMS:
            raise ValueError(
                f"fid_dims: must be one of {', '.join(map(str, FID_DIMS))}, got {self.fid_dims!r}"
            )
        if self.lpips_net not in LPIPS_NETS:
            raise ValueError(
                f"lpips_net: must be one of {', '.join(LPIPS_NETS)}, got {self.lpips_net!r}"
            )
        if not isinstance(self.torch_home, str):
            raise ValueError(f"torch_home: must be a folder path or blank, got {self.torch_home!r}")
        checked: dict[str, Any] = {
            "batch_size": check_int("batch_size", self.batch_size, 1, 4096),
            "kid_subsets": check_int("kid_subsets", self.kid_subsets, 1, 10_000),
            "kid_subset_size": check_int("kid_subset_size", self.kid_subset_size, 2, 100_000),
            "is_splits": check_int("is_splits", self.is_splits, 1, 100),
            "lpips_size": check_int("lpips_size", self.lpips_size, 0, 1024),
            "diversity_pairs": check_int("diversity_pairs", self.diversity_pairs, 1, 10_000_000),
            "collapse_ratio": check_float("collapse_ratio", self.collapse_ratio, 0, 1),
            "memorization_lpips": check_float("memorization_lpips", self.memorization_lpips, 0, 1),
            "memorization_ratio": check_float("memorization_ratio", self.memorization_ratio, 0, 1),
            "memorization_pixel": check_float("memorization_pixel", self.memorization_pixel, 0, 1),
            "tone_tolerance": check_int("tone_tolerance", self.tone_tolerance, 0, 5),
            "min_group_size": check_int("min_group_size", self.min_group_size, 2, 1_000_000),
            "seed": check_int("seed", self.seed, 0, 2**32 - 1),
        }
        if 0 < checked["lpips_size"] < 32:
            raise ValueError(f"lpips_size: 0 or at least 32 pixels, got {self.lpips_size}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def torch_home_or_none(self) -> str | None:
        return self.torch_home or None

    @classmethod
    def preset(cls, name: str) -> MetricsConfig:
        """``standard``: the published settings (2048-d FID). ``quick-64d``: 64-d features and
        fewer KID subsets, for CPU demos (not comparable with published FID values)."""
        if name == "standard":
            return cls()
        if name == "quick-64d":
            return cls(fid_dims=64, kid_subsets=20)
        raise ValueError(f"name: unknown preset {name!r} (known: {', '.join(cls.PRESETS)})")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["metrics"] = list(self.metrics)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricsConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(known))})")
        values = dict(data)
        if isinstance(values.get("metrics"), list):
            values["metrics"] = tuple(values["metrics"])
        return cls(**values)

"""Evaluate a synthetic set against a real one: FID, KID, IS, LPIPS, tone, memorization.

``evaluate`` is the one entry point behind ``evaluate`` runs, ``python -m validation
metrics`` and the demo. It returns a JSON-ready dict in which every figure carries its
definition, the number of images behind it and the label of the weights it was computed
on; a figure meets a literature target only when its weights are official.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from validation.metrics.cache import FeatureCache, StatsCache, set_digest
from validation.metrics.config import MetricsConfig
from validation.metrics.distances import (
    FID_MIN_RECOMMENDED,
    frechet_distance,
    frechet_stats,
    inception_score,
    kid,
)
from validation.metrics.images import ImageItem, load_rgb, with_sha256s
from validation.metrics.neighbours import nearest, pair_distances, pixel_vectors, sampled_pairs
from validation.metrics.report import summary_rows
from validation.metrics.weights import LABELS, Weights

StageProgress = Callable[[str, int, int], None]

#: LPIPS embeddings are cached on disk up to this image side (``lpips_size``).
LPIPS_CACHE_MAX_SIZE = 64

DEFINITIONS: dict[str, str] = {
    "fid": (
        "Frechet Inception Distance: |mu_r - mu_s|^2 + Tr(S_r + S_s - 2 (S_r S_s)^1/2) between "
        "Gaussians fitted to pytorch-fid InceptionV3 features of the real and synthetic images "
        "(pytorch-fid's calculate_frechet_distance; equal to `python -m pytorch_fid` on the same "
        "files and weights). Lower is better; biased upwards below 2048 images."
    ),
    "kid": (
        "Kernel Inception Distance: unbiased MMD^2 with kernel (x.y/d + 1)^3 on the same "
        "features, mean and std over random subsets drawn without replacement. Unbiased at "
        "small n, so compare it with FID when n < 2048. Lower is better; 0 = same distribution."
    ),
    "is": (
        "Inception Score: exp(E_x KL(p(y|x) || p(y))) with p(y|x) the softmax of the FID "
        "Inception's 1008 logits and p(y) its mean over a split; mean and std over consecutive "
        "splits. ImageNet classes say little about dermoscopy: read it as a sanity check."
    ),
    "lpips_fidelity": (
        "LPIPS fidelity: for each synthetic image, the LPIPS distance (lpips package) to its "
        "nearest real image, searched over the whole real set; mean over synthetic images. "
        "Lower = closer to real images."
    ),
    "lpips_diversity": (
        "LPIPS diversity: mean LPIPS distance between pairs of distinct synthetic images of the "
        "same FST x diagnosis cell (all pairs, or a random sample of diversity_pairs), beside "
        "the same figure for the real images of the cell. Mode-collapse alarm when the "
        "synthetic diversity is below collapse_ratio x the real one."
    ),
    "tone": (
        "Tone fidelity: each synthetic image's skin type estimated from its pixels (ITA, "
        "validation.ita) against the type it was generated for: exact rate and within-one-type "
        "rate over the images that could be estimated, per requested FST."
    ),
    "memorization": (
        "Memorization audit: for each synthetic image, its nearest training image in Inception "
        "feature space (L2), in LPIPS distance and in pixel RMSE at 32 x 32 (both searched over "
        "the whole training set). A pair is flagged as a possible copy when its pixel RMSE is "
        "below memorization_pixel, or its LPIPS distance is below memorization_lpips and also "
        "below memorization_ratio x the distance from that training image to its own nearest "
        "other training image (much closer to it than any other training image is)."
    ),
}

#: The seed's literature targets. A figure counts only on official weights.
TARGETS: dict[str, dict[str, Any]] = {
    "fid": {"op": "<", "value": 20.0, "field": "overall.value"},
    "is": {"op": ">", "value": 5.0, "field": "synthetic.mean"},
    "lpips_fidelity": {"op": "<", "value": 0.1, "field": "overall.mean"},
    "tone": {"op": ">", "value": 0.9, "field": "overall.within_one_rate"},
}


def _target(
    name: str, value: float | None, weights: Weights | None, note: str = ""
) -> dict[str, Any]:
    spec = TARGETS[name]
    result: dict[str, Any] = {"op": spec["op"], "value": spec["value"], "met": None, "why": ""}
    if value is None:
        result["why"] = "no value"
    elif weights is not None and not weights.official:
        result["why"] = f"{LABELS[weights.status]}: cannot count as meeting a literature target"
    elif note:
        result["why"] = note
    else:
        result["met"] = bool(value < spec["value"] if spec["op"] == "<" else value > spec["value"])
    return result


def _groups(items: Sequence[ImageItem], attribute: str) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        value = getattr(item, attribute)
        if value is not None:
            groups.setdefault(str(value), []).append(index)
    return dict(sorted(groups.items()))


def _summary(values: NDArray[np.floating]) -> dict[str, Any]:
    if len(values) == 0:
        return {"n": 0, "mean": None, "median": None, "min": None, "max": None}
    return {
        "n": int(len(values)),
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


class _Evaluation:
    def __init__(
        self,
        real: Sequence[ImageItem],
        synthetic: Sequence[ImageItem],
        train: Sequence[ImageItem],
        config: MetricsConfig,
        device: Any,
        cache_dir: str | Path | None,
        real_label: str,
        on_progress: StageProgress | None,
    ):
        self.real, self.synthetic, self.train = list(real), list(synthetic), list(train)
        self.config = config
        self.device = device
        self.features = FeatureCache(Path(cache_dir) / "features" if cache_dir else None)
        self.stats = StatsCache(cache_dir)
        self.real_label = real_label
        self.on_progress = on_progress
        self.timings: dict[str, float] = {}
        self.weights: dict[str, Weights] = {}

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.on_progress:
            self.on_progress(stage, done, total)

    # --- features ------------------------------------------------------------------------

    def inception(self) -> dict[str, dict[str, NDArray[np.float32]]]:
        from validation.metrics.backbones import InceptionFeatures

        started = time.monotonic()
        backbone = InceptionFeatures(
            self.config.fid_dims,
            logits="is" in self.config.metrics,
            device=self.device,
            torch_home=self.config.torch_home_or_none,
        )
        self.weights["fid"] = backbone.weights
        self.inception_key = backbone.key
        sets = {"real": self.real, "synthetic": self.synthetic}
        if "memorization" in self.config.metrics:
            sets["train"] = self.train
        out = {}
        for name, items in sets.items():
            out[name] = backbone.extract(
                items,
                self.features,
                self.config.batch_size,
                lambda d, t, name=name: self.progress(f"inception features ({name})", d, t),
            )
        self.timings["inception_features_s"] = round(time.monotonic() - started, 3)
        return out

    def lpips(self) -> dict[str, NDArray[np.float32]]:
        from validation.metrics.backbones import LpipsEmbedder

        started = time.monotonic()
        embedder = LpipsEmbedder(
            self.config.lpips_net,
            size=self.config.lpips_size,
            device=self.device,
            torch_home=self.config.torch_home_or_none,
        )
        self.weights["lpips"] = embedder.weights
        sets = {"real": self.real, "synthetic": self.synthetic}
        if "memorization" in self.config.metrics:
            sets["train"] = self.train
        # An embedding is ~128 KB per image at 64 px (cached like the Inception features) but
        # grows with the square of the side (2.5 MB at 256 px): larger ones are recomputed.
        cache = (
            self.features
            if 0 < self.config.lpips_size <= LPIPS_CACHE_MAX_SIZE
            else FeatureCache(None)
        )
        out = {
            name: embedder.extract(
                items,
                cache,
                self.config.batch_size,
                lambda d, t, name=name: self.progress(f"lpips embeddings ({name})", d, t),
            )["lpips"]
            for name, items in sets.items()
        }
        self.timings["lpips_embeddings_s"] = round(time.monotonic() - started, 3)
        return out

    # --- FID and KID ---------------------------------------------------------------------

    def _stats(
        self, features: NDArray[np.float32], items: Sequence[ImageItem], label: str
    ) -> tuple[Any, Any]:
        digest = set_digest(
            f"{self.inception_key}-pool{self.config.fid_dims}", [i.sha256 for i in items]
        )
        cached = self.stats.get(digest)
        if cached is not None:
            return cached
        mu, sigma = frechet_stats(features)
        self.stats.put(
            digest,
            mu,
            sigma,
            {
                "set": label,
                "n": len(items),
                "backbone": self.inception_key,
                "dims": self.config.fid_dims,
            },
        )
        return mu, sigma

    def _fid_kid_group(
        self,
        real_idx: list[int],
        syn_idx: list[int],
        pool: dict[str, NDArray[np.float32]],
        label: str,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        n_real, n_syn = len(real_idx), len(syn_idx)
        base = {"n_real": n_real, "n_synthetic": n_syn}
        if min(n_real, n_syn) < self.config.min_group_size:
            reason = f"too few images (need {self.config.min_group_size} on each side)"
            return {**base, "value": None, "reason": reason}, {
                **base,
                "mean": None,
                "std": None,
                "reason": reason,
            }
        warning = (
            f"n < {FID_MIN_RECOMMENDED}: FID is biased upwards at this size; compare KID"
            if min(n_real, n_syn) < FID_MIN_RECOMMENDED
            else ""
        )
        fid_entry: dict[str, Any] = {**base, "value": None, "warning": warning}
        if "fid" in self.config.metrics:
            real_f = pool["real"][real_idx]
            mu_r, s_r = self._stats(
                real_f, [self.real[i] for i in real_idx], f"{self.real_label} {label}"
            )
            mu_s, s_s = frechet_stats(pool["synthetic"][syn_idx])
            fid_entry["value"] = frechet_distance(mu_r, s_r, mu_s, s_s)
        kid_entry: dict[str, Any] = {**base, "mean": None, "std": None}
        if "kid" in self.config.metrics:
            mean, std, size = kid(
                pool["real"][real_idx],
                pool["synthetic"][syn_idx],
                subsets=self.config.kid_subsets,
                subset_size=self.config.kid_subset_size,
                seed=self.config.seed,
            )
            kid_entry.update(mean=mean, std=std, subset_size=size, subsets=self.config.kid_subsets)
        return fid_entry, kid_entry

    def fid_kid(self, features: dict[str, dict[str, NDArray[np.float32]]]) -> dict[str, Any]:
        started = time.monotonic()
        key = f"pool{self.config.fid_dims}"
        pool = {"real": features["real"][key], "synthetic": features["synthetic"][key]}
        fid: dict[str, Any] = {"definition": DEFINITIONS["fid"], "dims": self.config.fid_dims}
        kid_out: dict[str, Any] = {"definition": DEFINITIONS["kid"], "dims": self.config.fid_dims}
        overall = self._fid_kid_group(
            list(range(len(self.real))), list(range(len(self.synthetic))), pool, "all"
        )
        fid["overall"], kid_out["overall"] = overall
        for attribute, name in (("fst", "per_fst"), ("diagnosis", "per_diagnosis")):
            real_groups, syn_groups = (
                _groups(self.real, attribute),
                _groups(self.synthetic, attribute),
            )
            fid[name], kid_out[name] = {}, {}
            for group in sorted(set(real_groups) | set(syn_groups), key=_sort_key):
                f, k = self._fid_kid_group(
                    real_groups.get(group, []),
                    syn_groups.get(group, []),
                    pool,
                    f"{attribute}={group}",
                )
                fid[name][group], kid_out[name][group] = f, k
        note = (
            ""
            if self.config.fid_dims == 2048
            else f"computed at {self.config.fid_dims}-d, targets are for 2048-d"
        )
        fid["target"] = _target("fid", fid["overall"].get("value"), self.weights["fid"], note)
        self.timings["fid_kid_s"] = round(time.monotonic() - started, 3)
        result = {}
        if "fid" in self.config.metrics:
            result["fid"] = fid
        if "kid" in self.config.metrics:
            result["kid"] = kid_out
        return result

    # --- IS ------------------------------------------------------------------------------

    def inception_score(
        self, features: dict[str, dict[str, NDArray[np.float32]]]
    ) -> dict[str, Any]:
        splits = self.config.is_splits
        out: dict[str, Any] = {"definition": DEFINITIONS["is"], "splits": splits}
        for name in ("synthetic", "real"):
            logits = features[name]["logits"]
            if len(logits) == 0:
                out[name] = {"n": 0, "mean": None, "std": None}
                continue
            mean, std, used = inception_score(logits, splits)
            out[name] = {"n": len(logits), "mean": mean, "std": std, "splits": used}
        out["per_fst"] = {}
        for group, idx in _groups(self.synthetic, "fst").items():
            mean, std, used = inception_score(features["synthetic"]["logits"][idx], splits)
            out["per_fst"][group] = {"n": len(idx), "mean": mean, "std": std, "splits": used}
        out["target"] = _target("is", out["synthetic"]["mean"], self.weights["fid"])
        return out

    # --- LPIPS ---------------------------------------------------------------------------

    def lpips_metrics(self, emb: dict[str, NDArray[np.float32]]) -> dict[str, Any]:
        started = time.monotonic()
        config = self.config
        fidelity: dict[str, Any] = {"definition": DEFINITIONS["lpips_fidelity"]}
        if len(self.real) and len(self.synthetic):
            nn_idx, nn_dist = nearest(emb["synthetic"], emb["real"])
        else:
            nn_idx, nn_dist = np.zeros(0, dtype=np.int64), np.zeros(0)
        fidelity["overall"] = _summary(nn_dist)
        fidelity["per_fst"] = {
            g: _summary(nn_dist[idx]) for g, idx in _groups(self.synthetic, "fst").items()
        }
        fidelity["per_diagnosis"] = {
            g: _summary(nn_dist[idx]) for g, idx in _groups(self.synthetic, "diagnosis").items()
        }
        fidelity["target"] = _target(
            "lpips_fidelity", fidelity["overall"]["mean"], self.weights["lpips"]
        )

        rng = np.random.default_rng(config.seed)
        diversity: dict[str, Any] = {
            "definition": DEFINITIONS["lpips_diversity"],
            "collapse_ratio": config.collapse_ratio,
            "cells": [],
        }

        def cell_diversity(
            embeddings: NDArray[np.float32], idx: list[int]
        ) -> tuple[float | None, int]:
            if len(idx) < 2:
                return None, 0
            pairs = sampled_pairs(len(idx), config.diversity_pairs, rng)
            return float(pair_distances(embeddings[idx], pairs).mean()), len(pairs)

        def cells(items: Sequence[ImageItem]) -> dict[tuple[str, str], list[int]]:
            out: dict[tuple[str, str], list[int]] = {}
            for i, item in enumerate(items):
                out.setdefault(
                    (str(item.fst) if item.fst else "?", item.diagnosis or "?"), []
                ).append(i)
            return out

        syn_cells, real_cells = cells(self.synthetic), cells(self.real)
        alarms = []
        for cell in sorted(syn_cells, key=lambda c: (_sort_key(c[0]), c[1])):
            syn_value, syn_pairs = cell_diversity(emb["synthetic"], syn_cells[cell])
            real_value, real_pairs = cell_diversity(emb["real"], real_cells.get(cell, []))
            ratio = syn_value / real_value if syn_value is not None and real_value else None
            collapse = ratio is not None and ratio < config.collapse_ratio
            entry = {
                "fst": cell[0],
                "diagnosis": cell[1],
                "n_synthetic": len(syn_cells[cell]),
                "n_real": len(real_cells.get(cell, [])),
                "synthetic": syn_value,
                "real": real_value,
                "pairs_synthetic": syn_pairs,
                "pairs_real": real_pairs,
                "ratio": ratio,
                "collapse": collapse,
            }
            diversity["cells"].append(entry)
            if collapse:
                alarms.append(
                    f"FST {cell[0]} x {cell[1]}: synthetic diversity {syn_value:.4f} is {ratio:.0%} of real {real_value:.4f}"
                )
        overall_syn, _ = cell_diversity(emb["synthetic"], list(range(len(self.synthetic))))
        overall_real, _ = cell_diversity(emb["real"], list(range(len(self.real))))
        diversity["overall"] = {
            "synthetic": overall_syn,
            "real": overall_real,
            "n_synthetic": len(self.synthetic),
            "n_real": len(self.real),
        }
        diversity["alarms"] = alarms
        self.timings["lpips_s"] = round(time.monotonic() - started, 3)
        return {
            "net": config.lpips_net,
            "size": config.lpips_size,
            "fidelity": fidelity,
            "diversity": diversity,
            "nearest_real": nn_idx.tolist(),
        }

    # --- tone ----------------------------------------------------------------------------

    def tone(self) -> dict[str, Any]:
        from validation.ita import estimate_batch, estimated_fsts
        from validation.tone import tone_fidelity

        started = time.monotonic()
        labelled = [i for i in self.synthetic if i.fst is not None]
        estimates = estimate_batch([i.path for i in labelled])
        fidelity = tone_fidelity(
            [i.fst for i in labelled],
            estimated_fsts(estimates),
            tolerance=self.config.tone_tolerance,
        )
        real_estimates = estimate_batch([i.path for i in self.real])
        out = {
            "definition": DEFINITIONS["tone"],
            "n_unlabelled": len(self.synthetic) - len(labelled),
            **fidelity.to_dict(),
            "ita": {
                "synthetic": [round(e.ita, 3) for e in estimates if e is not None and e.reliable],
                "real": [round(e.ita, 3) for e in real_estimates if e is not None and e.reliable],
            },
        }
        out["target"] = _target("tone", fidelity.overall.within_one_rate, None)
        self.timings["tone_s"] = round(time.monotonic() - started, 3)
        return out

    # --- memorization --------------------------------------------------------------------

    def memorization(
        self,
        features: dict[str, dict[str, NDArray[np.float32]]],
        emb: dict[str, NDArray[np.float32]],
    ) -> dict[str, Any]:
        started = time.monotonic()
        config = self.config
        out: dict[str, Any] = {
            "definition": DEFINITIONS["memorization"],
            "thresholds": {
                "lpips": config.memorization_lpips,
                "ratio": config.memorization_ratio,
                "pixel_rmse": config.memorization_pixel,
            },
            "n_synthetic": len(self.synthetic),
            "n_train": len(self.train),
        }
        if not self.train or not self.synthetic:
            out.update(n_flagged=0, flagged=[], reason="no training images to compare with")
            return out
        key = f"pool{config.fid_dims}"
        f_idx, f_dist = nearest(features["synthetic"][key], features["train"][key])
        l_idx, l_dist = nearest(emb["synthetic"], emb["train"])
        # How close each training image's nearest *other* training image is: a synthetic image
        # counts as a copy of t only if it is much closer to t than any other training image.
        n_train = len(self.train)
        if n_train > 1:
            everyone = np.arange(n_train)
            _, loo = nearest(emb["train"], emb["train"], exclude=everyone)
        else:
            loo = np.full(n_train, np.inf)
        limits = np.minimum(config.memorization_lpips, config.memorization_ratio * loo[l_idx])
        syn_px = _pixels(self.synthetic)
        train_px = _pixels(self.train)
        p_idx, p_dist = nearest(syn_px, train_px)
        p_rmse = np.sqrt(p_dist)
        flagged = []
        for s in range(len(self.synthetic)):
            by_lpips = l_dist[s] < limits[s]
            by_pixel = p_rmse[s] < config.memorization_pixel
            if not (by_lpips or by_pixel):
                continue
            t = int(l_idx[s]) if by_lpips else int(p_idx[s])
            # Distances of the pair shown (s, t); each space's own nearest index beside them.
            f_syn, f_train = features["synthetic"][key][s], features["train"][key][t]
            flagged.append(
                {
                    "synthetic": s,
                    "train": t,
                    "synthetic_key": self.synthetic[s].key or self.synthetic[s].path.name,
                    "train_key": self.train[t].key or self.train[t].path.name,
                    "synthetic_path": str(self.synthetic[s].path),
                    "train_path": str(self.train[t].path),
                    "lpips": float(
                        ((emb["synthetic"][s] - emb["train"][t]).astype(np.float64) ** 2).sum()
                    ),
                    "pixel_rmse": float(
                        np.sqrt(((syn_px[s] - train_px[t]).astype(np.float64) ** 2).sum())
                    ),
                    "feature_distance": float(
                        np.sqrt(((f_syn - f_train).astype(np.float64) ** 2).sum())
                    ),
                    "by": [n for n, hit in (("lpips", by_lpips), ("pixel", by_pixel)) if hit],
                    "nearest": {
                        "lpips": int(l_idx[s]),
                        "pixel": int(p_idx[s]),
                        "feature": int(f_idx[s]),
                    },
                }
            )
        out.update(
            n_flagged=len(flagged),
            flagged=flagged,
            nearest={
                "lpips": _summary(l_dist),
                "pixel_rmse": _summary(p_rmse),
                "feature_l2": _summary(np.sqrt(f_dist)),
            },
            same_neighbour_rate=float(np.mean(f_idx == l_idx)),
            train_nearest_lpips=_summary(loo[np.isfinite(loo)]),
        )
        self.timings["memorization_s"] = round(time.monotonic() - started, 3)
        return out


def _pixels(items: Sequence[ImageItem], side: int = 32) -> NDArray[np.float32]:
    """Pixel vectors (``pixel_vectors``) of images of possibly different sizes."""
    return np.concatenate([pixel_vectors(load_rgb(i.path)[None], side) for i in items])


def _sort_key(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (99, value)


def evaluate(
    real: Sequence[ImageItem],
    synthetic: Sequence[ImageItem],
    config: MetricsConfig | None = None,
    *,
    train: Sequence[ImageItem] | None = None,
    device: Any = None,
    cache_dir: str | Path | None = None,
    real_label: str = "real",
    on_progress: StageProgress | None = None,
) -> dict[str, Any]:
    """Compute the configured metrics of ``synthetic`` against ``real``.

    Args:
        real: The real reference images (labels give per-FST and per-diagnosis figures).
        synthetic: The synthetic images; ``fst`` is the type each was generated for.
        config: Which metrics and their parameters (defaults: all, 2048-d FID).
        train: Training images for the memorization audit (default: ``real``).
        device: torch device (default: CUDA when available, else CPU).
        cache_dir: Folder of the feature and statistics caches (``None``: no cache).
        real_label: Names the real set in the statistics cache (e.g. ``"phantom/test"``).
        on_progress: Called with (stage, done, total) while features are extracted.

    Returns:
        The results as a JSON-ready dict (see ``DEFINITIONS`` for each figure's meaning).

    Raises:
        ValueError: naming the argument when a set is empty.
        validation.metrics.weights.MissingWeightsError: a backbone's weight file is absent.
    """
    config = config or MetricsConfig()
    if not real:
        raise ValueError("real: no real images to compare with")
    if not synthetic:
        raise ValueError("synthetic: no synthetic images to evaluate")
    started = time.monotonic()
    real = with_sha256s(real)
    synthetic = with_sha256s(synthetic)
    train = with_sha256s(train) if train is not None else real
    run = _Evaluation(real, synthetic, train, config, device, cache_dir, real_label, on_progress)
    metrics = set(config.metrics)
    result: dict[str, Any] = {
        "config": config.to_dict(),
        "n_real": len(real),
        "n_synthetic": len(synthetic),
        "n_train": len(train),
    }
    features = run.inception() if metrics & {"fid", "kid", "is", "memorization"} else None
    if features is not None and metrics & {"fid", "kid"}:
        result.update(run.fid_kid(features))
    if features is not None and "is" in metrics:
        result["is"] = run.inception_score(features)
    emb = run.lpips() if metrics & {"lpips", "memorization"} else None
    if emb is not None and "lpips" in metrics:
        result["lpips"] = run.lpips_metrics(emb)
    if "tone" in metrics:
        result["tone"] = run.tone()
    if "memorization" in metrics and features is not None and emb is not None:
        result["memorization"] = run.memorization(features, emb)
    result["weights"] = {name: w.to_dict() for name, w in run.weights.items()}
    result["official"] = all(w.official for w in run.weights.values()) if run.weights else None
    run.timings["total_s"] = round(time.monotonic() - started, 3)
    result["timings"] = run.timings
    result["cache"] = {
        "feature_hits": run.features.hits,
        "feature_misses": run.features.misses,
        "stats_hits": run.stats.hits,
    }
    result["summary"] = summary_rows(result)
    return result

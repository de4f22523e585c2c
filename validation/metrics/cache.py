"""On-disk caches: per-image features (by image sha256 and backbone) and set statistics.

Features are keyed by the image file's sha256 and a backbone key that names the network,
its weights' sha256 and the feature kind, so re-evaluating a set recomputes nothing and
changed weights never reuse stale features. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from validation.files import atomic_write_bytes, atomic_write_text


class FeatureCache:
    """``root/<backbone key>/<sha[:2]>/<sha>.npy``; ``root=None`` keeps nothing."""

    def __init__(self, root: str | os.PathLike[str] | None):
        self.root = Path(root) if root else None
        self.hits = 0
        self.misses = 0

    def _path(self, key: str, sha256: str) -> Path:
        assert self.root is not None  # noqa: S101 - internal invariant
        return self.root / key / sha256[:2] / f"{sha256}.npy"

    def get(self, key: str, sha256: str) -> NDArray[np.float32] | None:
        if self.root is None:
            self.misses += 1
            return None
        path = self._path(key, sha256)
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, sha256: str, value: NDArray[np.float32]) -> None:
        if self.root is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(self._path(key, sha256), buffer.getvalue())


def set_digest(backbone_key: str, sha256s: Sequence[str]) -> str:
    """One id for a set of images under a backbone: order does not matter, duplicates do."""
    digest = hashlib.sha256(backbone_key.encode())
    for sha in sorted(sha256s):
        digest.update(sha.encode())
    return digest.hexdigest()


class StatsCache:
    """Frechet statistics (mu, sigma, n) of image sets, e.g. a real split, per backbone.

    ``root/stats/<set digest>.npz`` with a ``.json`` beside it naming the set (dataset,
    split, group) for people browsing the folder.
    """

    def __init__(self, root: str | os.PathLike[str] | None):
        self.root = Path(root) / "stats" if root else None
        self.hits = 0

    def get(self, digest: str) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
        if self.root is None:
            return None
        try:
            with np.load(self.root / f"{digest}.npz", allow_pickle=False) as data:
                value = data["mu"].copy(), data["sigma"].copy()
        except (OSError, ValueError, KeyError):
            return None
        self.hits += 1
        return value

    def put(
        self,
        digest: str,
        mu: NDArray[np.float64],
        sigma: NDArray[np.float64],
        info: dict[str, Any],
    ) -> None:
        if self.root is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, mu=mu, sigma=sigma)
        atomic_write_bytes(self.root / f"{digest}.npz", buffer.getvalue())
        atomic_write_text(self.root / f"{digest}.json", json.dumps(info, sort_keys=True))

"""pytorch-fid 0.3.0 on SciPy 1.18 or later.

pytorch-fid 0.3.0 (the newest release) calls ``scipy.linalg.sqrtm(A, disp=False)`` in
``calculate_frechet_distance``, expecting the pair ``(sqrtm, error estimate)``. SciPy
deprecated ``disp`` in 1.16 and removed it in 1.18, so there every FID through pytorch-fid
fails with ``TypeError: sqrtm() got an unexpected keyword argument 'disp'``. The project
pins SciPy 1.17.1, but the GPU machine's SciPy is whatever its image holds, and a pin gets
bumped: ``validation.metrics.distances.frechet_distance`` and the Inception benchmark apply
the patch before they call pytorch-fid.

``patch_pytorch_fid_sqrtm`` gives ``pytorch_fid.fid_score`` a ``linalg`` whose ``sqrtm``
takes ``disp`` again (with SciPy 1.17's meaning: ``disp=False`` returns the pair, the
estimate being ``norm(X @ X - A, 'fro')**2 / norm(A, 'fro')``, as SciPy 1.17's docs give it);
everything else is SciPy's own. It does nothing where SciPy still accepts ``disp``.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

import numpy as np


class _LinalgWithDisp:
    """``scipy.linalg`` with a ``sqrtm`` that accepts ``disp`` (and ``blocksize``)."""

    def __init__(self, linalg: ModuleType) -> None:
        self._linalg = linalg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._linalg, name)

    def sqrtm(self, A: Any, disp: bool = True, blocksize: Any = None) -> Any:
        root = self._linalg.sqrtm(A)
        if disp is not False:
            return root
        a = np.asarray(A)
        try:
            error = self._linalg.norm(root @ root - a, "fro") ** 2 / self._linalg.norm(a, "fro")
        except (ValueError, ArithmeticError):
            error = np.inf
        return root, error


def sqrtm_takes_disp(sqrtm: Any) -> bool:
    try:
        return "disp" in inspect.signature(sqrtm).parameters
    except (TypeError, ValueError):  # no signature: assume the old SciPy
        return True


def patch_pytorch_fid_sqrtm() -> bool:
    """Make ``pytorch_fid.fid_score.calculate_frechet_distance`` work on this SciPy; True if
    a patch was needed (SciPy >= 1.18)."""
    from pytorch_fid import fid_score

    linalg = fid_score.linalg
    if isinstance(linalg, _LinalgWithDisp) or sqrtm_takes_disp(linalg.sqrtm):
        return False
    fid_score.linalg = _LinalgWithDisp(linalg)  # type: ignore[assignment]
    return True

"""pytorch-fid 0.3.0 on a SciPy whose sqrtm lacks disp (validation.metrics.fid_compat)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import scipy.linalg
from pytorch_fid import fid_score

from validation.metrics.distances import frechet_distance
from validation.metrics.fid_compat import patch_pytorch_fid_sqrtm


def sqrtm_without_disp(A: np.ndarray) -> np.ndarray:
    return scipy.linalg.sqrtm(A)


def test_pytorch_fid_works_again_on_a_sqrtm_without_disp(monkeypatch: pytest.MonkeyPatch) -> None:
    new_scipy = types.SimpleNamespace(sqrtm=sqrtm_without_disp, norm=scipy.linalg.norm)
    monkeypatch.setattr(fid_score, "linalg", new_scipy)
    with pytest.raises(TypeError, match="disp"):
        fid_score.calculate_frechet_distance(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
    assert patch_pytorch_fid_sqrtm() is True
    assert patch_pytorch_fid_sqrtm() is False  # once is enough
    root, error = fid_score.linalg.sqrtm(np.diag([4.0, 9.0]), disp=False)
    assert np.allclose(root, np.diag([2.0, 3.0])) and error < 1e-12
    # Diagonal covariances: |mu1 - mu2|^2 + sum (s1 + s2 - 2 sqrt(s1 s2)).
    s1, s2 = np.array([1.0, 4.0]), np.array([9.0, 1.0])
    fid = fid_score.calculate_frechet_distance(np.zeros(2), np.diag(s1), np.ones(2), np.diag(s2))
    assert fid == pytest.approx(2 + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2)))


def test_nothing_is_patched_where_sqrtm_still_takes_disp(monkeypatch: pytest.MonkeyPatch) -> None:
    def old_sqrtm(A: np.ndarray, disp: bool = True, blocksize: int = 64) -> object:
        return A

    old_scipy = types.SimpleNamespace(sqrtm=old_sqrtm)
    monkeypatch.setattr(fid_score, "linalg", old_scipy)
    assert patch_pytorch_fid_sqrtm() is False and fid_score.linalg is old_scipy


def test_the_project_fid_works_on_a_sqrtm_without_disp(monkeypatch: pytest.MonkeyPatch) -> None:
    """``frechet_distance`` patches pytorch-fid itself: a SciPy bump does not break evaluate."""
    new_scipy = types.SimpleNamespace(sqrtm=sqrtm_without_disp, norm=scipy.linalg.norm)
    monkeypatch.setattr(fid_score, "linalg", new_scipy)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = a @ a.T + np.eye(3), b @ b.T + np.eye(3)
    mu1, mu2 = rng.normal(size=3), rng.normal(size=3)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(
        s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2))
    )
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)

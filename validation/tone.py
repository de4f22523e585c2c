"""Tone fidelity: do generated images show the skin type they were generated for?

Every synthetic image is generated for a requested Fitzpatrick type; ``validation.ita``
estimates the type the image actually shows. ``tone_fidelity`` compares the two over a set
of images, per requested type and overall:

* ``n``: images requested with the type; ``n_unestimated``: those whose type could not be
  estimated (``None``, e.g. too little skin), counted separately;
* ``exact_rate``, ``within_one_rate``, ``mean_abs_error`` (in types): over the images that
  could be estimated (``None`` when there are none);
* ``pass_rate``: share of *all* ``n`` images within ``tolerance`` types, an unestimated
  image counting as a failure (the rate of the tone-fidelity gate);
* a 6 x 6 confusion matrix, rows = requested type I-VI, columns = estimated type I-VI.

``within_tolerance`` is the per-image gate.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from validation.vocabulary import FST

_TYPES: tuple[int, ...] = tuple(int(f) for f in FST)


def _check_type(name: str, value: object, index: int | None = None) -> int:
    where = f" item {index}" if index is not None else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}:{where} {value!r} is not a Fitzpatrick skin type (int 1-6)")
    number = int(value)
    if number not in _TYPES:
        raise ValueError(f"{name}:{where} {number} is not a Fitzpatrick skin type (1-6)")
    return number


def _check_tolerance(tolerance: object) -> int:
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Integral):
        raise ValueError(f"tolerance: must be an integer number of types, got {tolerance!r}")
    if not 0 <= int(tolerance) <= 5:
        raise ValueError(f"tolerance: must be between 0 and 5, got {tolerance}")
    return int(tolerance)


def within_tolerance(requested: int, estimated: int | None, tolerance: int = 1) -> bool:
    """Whether one image passes the tone-fidelity gate.

    Args:
        requested: The skin type the image was generated for (1-6 or an ``FST``).
        estimated: The skin type estimated from the image, or ``None`` if it could not be
            estimated (which fails the gate).
        tolerance: Largest accepted difference in types (0 = exact, 1 = within one type).

    Returns:
        ``True`` when ``|estimated - requested| <= tolerance``.
    """
    tolerance = _check_tolerance(tolerance)
    wanted = _check_type("requested", requested)
    if estimated is None:
        return False
    return abs(_check_type("estimated", estimated) - wanted) <= tolerance


@dataclass(frozen=True)
class FidelityStats:
    """Agreement between requested and estimated types over a group of images.

    Attributes:
        n: Number of images in the group.
        n_estimated: Images whose type could be estimated.
        n_unestimated: Images whose type could not be estimated (``None``).
        exact_rate: Share of the estimated images with exactly the requested type.
        within_one_rate: Share of the estimated images within one type of the request.
        mean_abs_error: Mean ``|estimated - requested|`` in types over the estimated images.
        pass_rate: Share of all ``n`` images within the tolerance (unestimated fail).

    The rates are ``None`` where their denominator is zero.
    """

    n: int
    n_estimated: int
    n_unestimated: int
    exact_rate: float | None
    within_one_rate: float | None
    mean_abs_error: float | None
    pass_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "n": self.n,
            "n_estimated": self.n_estimated,
            "n_unestimated": self.n_unestimated,
            "exact_rate": self.exact_rate,
            "within_one_rate": self.within_one_rate,
            "mean_abs_error": self.mean_abs_error,
            "pass_rate": self.pass_rate,
        }


@dataclass(frozen=True)
class ToneFidelity:
    """Tone fidelity of a set of images (see the module docstring).

    Attributes:
        overall: Statistics over all images.
        per_fst: Statistics per requested type, for all six types (``n`` may be 0).
        confusion: 6 x 6 counts; ``confusion[r - 1][e - 1]`` images were requested as
            type ``r`` and estimated as type ``e``. Unestimated images are not in it.
        tolerance: The tolerance ``pass_rate`` uses.
    """

    overall: FidelityStats
    per_fst: dict[int, FidelityStats]
    confusion: tuple[tuple[int, ...], ...]
    tolerance: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; per-type keys are ``"1"``-``"6"``."""
        return {
            "tolerance": self.tolerance,
            "overall": self.overall.to_dict(),
            "per_fst": {str(fst): stats.to_dict() for fst, stats in self.per_fst.items()},
            "confusion": {
                "rows": "requested FST I-VI",
                "columns": "estimated FST I-VI",
                "counts": [list(row) for row in self.confusion],
            },
        }


def _as_list(name: str, values: object) -> list[object]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name}: must be a sequence of skin types, got {values!r}")
    return list(values)


def _stats(pairs: list[tuple[int, int | None]], tolerance: int) -> FidelityStats:
    estimated = [(r, e) for r, e in pairs if e is not None]
    errors = [abs(e - r) for r, e in estimated]
    n, k = len(pairs), len(estimated)
    return FidelityStats(
        n=n,
        n_estimated=k,
        n_unestimated=n - k,
        exact_rate=sum(d == 0 for d in errors) / k if k else None,
        within_one_rate=sum(d <= 1 for d in errors) / k if k else None,
        mean_abs_error=sum(errors) / k if k else None,
        pass_rate=sum(d <= tolerance for d in errors) / n if n else None,
    )


def tone_fidelity(
    requested: Sequence[int],
    estimated: Sequence[int | None],
    *,
    tolerance: int = 1,
) -> ToneFidelity:
    """Summarise how well estimated skin types match the requested ones.

    Args:
        requested: The skin type (1-6) each image was generated for.
        estimated: The skin type estimated from each image, in the same order; ``None``
            where it could not be estimated. ``validation.ita.estimated_fsts`` turns
            ``estimate_batch`` output into this.
        tolerance: Largest difference in types that counts as a pass in ``pass_rate``.

    Returns:
        Per-type and overall statistics and the confusion matrix.

    Raises:
        ValueError: naming the argument when the lengths differ, an entry is not a skin
            type, or the tolerance is not an integer 0-5.
    """
    tolerance = _check_tolerance(tolerance)
    wanted_types = _as_list("requested", requested)
    got_types = _as_list("estimated", estimated)
    if len(got_types) != len(wanted_types):
        raise ValueError(
            f"estimated: has {len(got_types)} entries but requested has {len(wanted_types)}; "
            "give one estimate (or None) per image"
        )
    pairs: list[tuple[int, int | None]] = []
    for index, (wanted, got) in enumerate(zip(wanted_types, got_types, strict=True)):
        pairs.append(
            (
                _check_type("requested", wanted, index),
                None if got is None else _check_type("estimated", got, index),
            )
        )
    confusion = [[0] * len(_TYPES) for _ in _TYPES]
    for wanted, got in pairs:
        if got is not None:
            confusion[wanted - 1][got - 1] += 1
    return ToneFidelity(
        overall=_stats(pairs, tolerance),
        per_fst={fst: _stats([p for p in pairs if p[0] == fst], tolerance) for fst in _TYPES},
        confusion=tuple(tuple(row) for row in confusion),
        tolerance=tolerance,
    )

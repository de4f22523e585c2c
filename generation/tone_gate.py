"""The tone-fidelity gate: does each generated image show the skin type it was asked for?

Every image's skin type is estimated from its pixels (``validation.ita``: median ITA of the
skin outside lesion, hair and dermoscope border) and compared with the requested type
(``validation.tone``). With a tolerance, an image further off than ``tolerance`` types is
generated again from a new seed, up to ``retries`` times; the replacement seeds are
recorded (``replacements``) so that a retried job rebuilds exactly the same plan, and each
replacement's provenance says which retry made it. Images still off after the last retry
are kept and counted: the report says how many.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from generation.generate import GeneratedImage, ImageSampler, generate_images
from generation.plans import MAX_SEED, GenerationItem
from validation.files import atomic_write_text
from validation.ita import estimate_batch, estimated_fsts
from validation.tone import ToneFidelity, tone_fidelity, within_tolerance

logger = logging.getLogger(__name__)


def retry_seed(base_seed: int, index: int, attempt: int) -> int:
    """The seed of the ``attempt``-th replacement of image ``index`` (deterministic)."""
    digest = hashlib.sha256(f"fairderm:{base_seed}:{index}:tone-retry:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


def load_replacements(path: str | os.PathLike[str]) -> dict[int, dict[str, int]]:
    """``{index: {"seed": ..., "attempt": ...}}`` recorded by an earlier gate, or empty."""
    path = Path(path)
    if not path.exists():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def apply_replacements(
    items: Sequence[GenerationItem], replacements: Mapping[int, Mapping[str, int]]
) -> list[GenerationItem]:
    """The plan with the seeds of images the gate replaced."""
    return [
        replace(item, seed=replacements[item.index]["seed"]) if item.index in replacements else item
        for item in items
    ]


@dataclass
class ToneGateResult:
    """What the gate found and did.

    Args:
        images (`list[GeneratedImage]`): The final images, in plan order.
        fidelity (`ToneFidelity`): Requested vs estimated skin type of the final images.
        estimates (`dict[int, dict]`): Per image index: estimated ``ita``, ``fst``, ``reliable``.
        replaced (`int`): Images generated again because their tone was off.
        still_off (`int`): Images outside the tolerance after the last retry (0 without one).
    """

    images: list[GeneratedImage]
    fidelity: ToneFidelity
    estimates: dict[int, dict[str, Any]] = field(default_factory=dict)
    replaced: int = 0
    still_off: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "fidelity": self.fidelity.to_dict(),
            "replaced": self.replaced,
            "still_off": self.still_off,
        }


def _estimate(images: Sequence[GeneratedImage]) -> dict[int, dict[str, Any]]:
    estimates = estimate_batch([image.path for image in images])
    fsts = estimated_fsts(estimates)
    result: dict[int, dict[str, Any]] = {}
    for image, estimate, fst in zip(images, estimates, fsts, strict=True):
        result[image.index] = {
            "ita": None if estimate is None else round(float(estimate.ita), 2),
            "fst": fst,
            "reliable": bool(estimate is not None and estimate.reliable),
        }
    return result


def tone_gate(
    sampler: ImageSampler | Callable[..., Any],
    images: Sequence[GeneratedImage],
    output_dir: str | os.PathLike[str],
    *,
    base_seed: int,
    provenance: dict[str, Any],
    batch_size: int,
    tolerance: int | None = None,
    retries: int = 2,
    replacements_path: str | os.PathLike[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ToneGateResult:
    """Estimate every image's skin type; with a tolerance, regenerate those too far off.

    Args:
        sampler: The sampler that made the images (``generate_images`` protocol).
        images (`Sequence[GeneratedImage]`): The generated set.
        output_dir (`str` or `os.PathLike`): Where the images are (replacements overwrite them).
        base_seed (`int`): The plan's seed; replacement seeds derive from it (``retry_seed``).
        provenance (`dict`): Provenance of the set; a replacement adds ``tone_retry``.
        batch_size (`int`): Images per sampler call for replacements.
        tolerance (`int`, *optional*): Largest accepted |requested - estimated| type difference;
            ``None`` only measures.
        retries (`int`, defaults to 2): Replacement attempts per image.
        replacements_path (`str` or `os.PathLike`, *optional*): JSON file recording replacement
            seeds (read by ``load_replacements``); written after every round.
        should_stop (`Callable[[], bool]`, *optional*): Polled between rounds.
    """
    if tolerance is not None and (isinstance(tolerance, bool) or not 0 <= tolerance <= 5):
        raise ValueError(f"tolerance: {tolerance!r} is not an integer in 0..5 or None")
    by_index = {image.index: image for image in images}
    estimates = _estimate(images)
    replacements = load_replacements(replacements_path) if replacements_path else {}
    replaced: set[int] = set()
    for attempt in range(1, (retries if tolerance is not None else 0) + 1):
        off = [
            index
            for index, image in by_index.items()
            if not within_tolerance(image.fst, estimates[index]["fst"], tolerance or 0)
        ]
        if not off or (should_stop is not None and should_stop()):
            break
        logger.info(
            "tone gate, round %d: regenerating %d images outside ±%s types",
            attempt,
            len(off),
            tolerance,
        )
        items = [
            GenerationItem(
                i, by_index[i].fst, by_index[i].diagnosis, retry_seed(base_seed, i, attempt)
            )
            for i in off
        ]
        for item in items:
            by_index[item.index].path.unlink(missing_ok=True)
        fresh = generate_images(
            sampler,
            items,
            output_dir,
            batch_size=batch_size,
            provenance={**provenance, "tone_retry": attempt},
        )
        for image in fresh:
            by_index[image.index] = image
            replacements[image.index] = {"seed": image.seed, "attempt": attempt}
            replaced.add(image.index)
        estimates.update(_estimate(fresh))
        if replacements_path:
            atomic_write_text(
                replacements_path, json.dumps({str(k): v for k, v in sorted(replacements.items())})
            )
    final = [by_index[image.index] for image in images]
    requested = [image.fst for image in final]
    estimated = [estimates[image.index]["fst"] for image in final]
    fidelity = tone_fidelity(
        requested, estimated, tolerance=tolerance if tolerance is not None else 1
    )
    still_off = 0
    if tolerance is not None:
        still_off = sum(
            not within_tolerance(r, e, tolerance) for r, e in zip(requested, estimated, strict=True)
        )
    return ToneGateResult(final, fidelity, estimates, replaced=len(replaced), still_off=still_off)

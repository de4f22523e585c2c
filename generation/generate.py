"""Batched, resumable image generation with per-image provenance embedded in the PNG.

Model-agnostic: ``generate_images`` takes any *sampler*, a callable that maps a batch of
``GenerationItem`` and one seeded ``torch.Generator`` per item to one ``PIL.Image`` per item
(``generation.conditional.ConditionalPipelineSampler`` is one; the Stable Diffusion path brings
its own). Every image is written atomically as ``<output_dir>/<index:06d>.png`` with its
provenance as JSON in an iTXt chunk (key ``fairderm:provenance``); a re-run skips the images
that are already there, so a retried or resumed job never regenerates or duplicates one.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from generation.manifest import (
    MANIFEST_NAME,
    append_to_manifest,
    compact_manifest,
    read_manifest,
)
from generation.plans import GenerationItem
from generation.writer import MAX_WRITER_THREADS, PROVENANCE_KEY, ImageWriter
from validation.checks import check_int
from validation.files import sha256_file, sweep_temp_files

logger = logging.getLogger(__name__)

#: A temporary file younger than this may be another shard's write in progress.
TEMP_FILE_GRACE_SECONDS = 600.0
#: Per-image provenance fields; they override same-named keys of the caller's provenance.
ITEM_FIELDS = ("index", "seed", "fst", "diagnosis")


class ImageSampler(Protocol):
    """Anything that turns items plus one generator per item into one image per item.

    A sampler may also have a ``batch_key`` attribute, a function of an item (or ``None``):
    ``generate_images`` then gives it batches whose items share one key, e.g. one skin type
    when each has its own LoRA adapter (see ``batches``).
    """

    def __call__(
        self, items: Sequence[GenerationItem], generators: Sequence[torch.Generator]
    ) -> Sequence[Image.Image]: ...


@dataclass(frozen=True)
class GeneratedImage:
    """One image on disk.

    Args:
        index (`int`), fst (`int`), diagnosis (`str`), seed (`int`): From the plan item.
        path (`Path`): The PNG.
        sha256 (`str`): Hex digest of the PNG file.
        provenance (`dict`): The provenance stored in the PNG.
        generated (`bool`): ``True`` if made by this call, ``False`` if found on disk.
    """

    index: int
    path: Path
    sha256: str
    fst: int
    diagnosis: str
    seed: int
    provenance: dict[str, Any] = field(default_factory=dict)
    generated: bool = True


def package_versions() -> dict[str, str]:
    """Versions of the software that shapes the pixels (python, torch, diffusers, numpy, pillow)."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "diffusers", "numpy", "pillow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance dict embedded in a FairDerm PNG; ``ValueError`` if it has none.

    Args:
        path (`str` or `os.PathLike`): A PNG written by ``generate_images``.
    """
    with Image.open(path) as image:
        text = getattr(image, "text", {}).get(PROVENANCE_KEY)
    if text is None:
        raise ValueError(f"path: {path} carries no {PROVENANCE_KEY} chunk")
    return json.loads(text)


def batches(
    items: Sequence[GenerationItem],
    batch_size: int,
    key: Callable[[GenerationItem], Hashable] | None = None,
) -> list[list[GenerationItem]]:
    """``items`` cut into batches of at most ``batch_size``, in the order they are sampled.

    Without ``key``: consecutive slices, in plan order. With ``key``: every batch holds items
    of one key, in plan order within the key, and the keys take turns (the first batch of
    each key in order of first appearance, then the second of each...), so a run stopped
    part-way stays as balanced across keys as the batches allow. Only each key's last batch
    can be short.
    """
    check_int("batch_size", batch_size, 1, 1 << 30)
    if key is None:
        return [
            list(items[start : start + batch_size]) for start in range(0, len(items), batch_size)
        ]
    groups: dict[Hashable, list[GenerationItem]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    queues = [
        deque(group[start : start + batch_size] for start in range(0, len(group), batch_size))
        for group in groups.values()
    ]
    ordered: list[list[GenerationItem]] = []
    while any(queues):
        ordered.extend(queue.popleft() for queue in queues if queue)
    return ordered


def image_path(output_dir: str | os.PathLike[str], index: int, width: int = 6) -> Path:
    """``output_dir/<index zero-padded to width>.png``."""
    return Path(output_dir) / f"{index:0{width}d}.png"


def _existing(path: Path, item: GenerationItem, recorded: str | None) -> GeneratedImage | None:
    """The finished image at ``path`` for ``item``, or ``None`` if missing or unreadable, or if
    its sha256 differs from the ``recorded`` one."""
    if not path.is_file():
        return None
    try:
        with Image.open(path) as image:
            image.load()
            text = image.text.get(PROVENANCE_KEY)
        provenance = json.loads(text) if text is not None else None
    except (OSError, ValueError, SyntaxError):
        logger.warning("Regenerating unreadable image %s", path)
        return None
    if not isinstance(provenance, dict):
        logger.warning("Regenerating %s: it has no provenance", path)
        return None
    found = tuple(provenance.get(key) for key in ITEM_FIELDS)
    wanted = (item.index, item.seed, item.fst, item.diagnosis)
    same_but_seed = found[0] == wanted[0] and found[2:] == wanted[2:]
    if found != wanted and same_but_seed and "tone_retry" in provenance:
        # A tone-gate replacement written before its seed was recorded in the plan (the job
        # stopped in between): the plan's seed wins and the image is made again.
        logger.warning("Regenerating %s: a tone-gate replacement the plan does not list", path)
        return None
    if found != wanted:
        raise ValueError(
            f"output_dir: {path.name} belongs to another plan "
            f"(index, seed, fst, diagnosis {found} instead of {wanted})"
        )
    digest = sha256_file(path)
    if recorded is not None and digest != recorded:
        logger.warning("Regenerating %s: its bytes differ from those in %s", path, MANIFEST_NAME)
        return None
    return GeneratedImage(
        index=item.index,
        path=path,
        sha256=digest,
        fst=item.fst,
        diagnosis=item.diagnosis,
        seed=item.seed,
        provenance=provenance,
        generated=False,
    )


def generate_images(
    sampler: ImageSampler | Callable[..., Sequence[Image.Image]],
    items: Sequence[GenerationItem],
    output_dir: str | os.PathLike[str],
    *,
    batch_size: int,
    provenance: dict[str, Any],
    on_progress: Callable[[int, int, list[GeneratedImage]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    writer_threads: int = 0,
) -> list[GeneratedImage]:
    """Generate ``items`` in batches as PNGs with provenance, skipping those already on disk.

    Args:
        sampler (`ImageSampler`):
            ``sampler(items, generators) -> images``: one ``PIL.Image`` per item, the noise of
            item ``i`` drawn from ``generators[i]`` (seeded with ``items[i].seed``).
        items (`Sequence[GenerationItem]`): The plan (unique indices), e.g. ``balanced_plan(...)``.
        output_dir (`str` or `os.PathLike`): Folder of the PNGs; created if missing.
        batch_size (`int`): Items per sampler call (batches follow plan order, or group
            items by the sampler's ``batch_key``: see ``batches``).
        provenance (`dict`):
            JSON-serialisable facts shared by every image (model hash, sampler settings, git
            sha, ``package_versions()``...). Each PNG stores it merged with its own
            ``index``, ``seed``, ``fst`` and ``diagnosis``.
        on_progress (`Callable[[int, int, list[GeneratedImage]], None]`, *optional*):
            Called after the skip scan and after every batch with (images done, total, the
            images that step added).
        should_stop (`Callable[[], bool]`, *optional*):
            Polled before every batch; ``True`` stops after the images already made (those
            still being written are finished first).
        writer_threads (`int`, *optional*, defaults to 0):
            Threads that encode and write the PNGs while the sampler makes the next batch
            (at most two batches wait for them); 0 writes each batch before the next is made.
            Either way ``on_progress`` sees every batch once its files are complete, in the
            order the batches were sampled, and a write error is raised here.

    Returns:
        The images done, in plan order: the whole plan, or fewer if ``should_stop`` ended the run.
        An existing image is returned with the provenance stored in its file.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: {batch_size!r} is not an integer >= 1")
    check_int("writer_threads", writer_threads, 0, MAX_WRITER_THREADS)
    if not isinstance(provenance, dict):
        raise ValueError(f"provenance: expected a dict, got {type(provenance).__name__}")
    try:
        json.dumps(provenance)
    except (TypeError, ValueError) as error:
        raise ValueError(f"provenance: not JSON-serialisable ({error})") from None
    indices = [item.index for item in items]
    if len(set(indices)) != len(indices):
        raise ValueError("items: indices are not unique")
    if any(index < 0 for index in indices):
        raise ValueError("items: negative index")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Other shards may be writing into this folder now: leave their fresh temporary files.
    sweep_temp_files(output_dir, min_age=TEMP_FILE_GRACE_SECONDS)
    width = max(6, len(str(max(indices, default=0))))
    try:
        recorded = read_manifest(output_dir)
    except ValueError as error:
        logger.warning("Ignoring %s", error)
        recorded = {}

    done: dict[int, GeneratedImage] = {}
    pending: list[GenerationItem] = []
    for item in items:
        path = image_path(output_dir, item.index, width)
        existing = _existing(path, item, recorded.get(path.name))
        if existing is None:
            pending.append(item)
        else:
            done[item.index] = existing
    # Before any file is (re)written, its old line goes; the images found whole are listed.
    # The journal left by an earlier run is folded in here too.
    compact_manifest(
        output_dir,
        add={image.path.name: image.sha256 for image in done.values()},
        remove=[image_path(output_dir, item.index, width).name for item in pending],
    )
    if done:
        logger.info("Skipping %d of %d images already in %s", len(done), len(items), output_dir)
    if on_progress is not None:
        on_progress(len(done), len(items), [done[i] for i in indices if i in done])

    # Batches whose files are being written, oldest first: (items, records, paths, futures).
    writing: deque[
        tuple[list[GenerationItem], list[dict[str, Any]], list[Path], list[Future[str]]]
    ] = deque()

    def finish(wait: bool) -> None:
        """Record the oldest batches whose files are complete (all of them with ``wait``)."""
        while writing and (wait or all(future.done() for future in writing[0][3])):
            batch, records, paths, futures = writing.popleft()
            written: list[GeneratedImage] = []
            for item, record, path, future in zip(batch, records, paths, futures, strict=True):
                written.append(
                    GeneratedImage(
                        index=item.index,
                        path=path,
                        sha256=future.result(),  # raises the writer's error
                        fst=item.fst,
                        diagnosis=item.diagnosis,
                        seed=item.seed,
                        provenance=record,
                    )
                )
                done[item.index] = written[-1]
            append_to_manifest(output_dir, {image.path.name: image.sha256 for image in written})
            if on_progress is not None:
                on_progress(len(done), len(items), written)

    with ImageWriter(writer_threads, max_pending=2 * batch_size) as writer:
        for batch in batches(pending, batch_size, getattr(sampler, "batch_key", None)):
            if should_stop is not None and should_stop():
                logger.info("Generation stopped with %d of %d images", len(done), len(items))
                break
            generators = [torch.Generator().manual_seed(item.seed) for item in batch]
            images = list(sampler(batch, generators))
            if len(images) != len(batch):
                raise ValueError(f"sampler: returned {len(images)} images for {len(batch)} items")
            # A sampler may report facts per image (e.g. an img2img source): kept in provenance.
            details = getattr(sampler, "last_details", None) or {}
            records: list[dict[str, Any]] = []
            paths: list[Path] = []
            futures: list[Future[str]] = []
            for item, image in zip(batch, images, strict=True):
                if not isinstance(image, Image.Image):
                    raise ValueError(f"sampler: returned {type(image).__name__}, not a PIL image")
                records.append(
                    {
                        **provenance,
                        **details.get(item.index, {}),
                        **{key: getattr(item, key) for key in ITEM_FIELDS},
                    }
                )
                paths.append(image_path(output_dir, item.index, width))
                futures.append(writer.submit(image, paths[-1], records[-1]))
            writing.append((batch, records, paths, futures))
            finish(wait=False)
            writer.raise_if_failed()
        finish(wait=True)
    # One sorted SHA256SUMS again; what this call made or found is re-listed in case the record
    # became unreadable meanwhile.
    compact_manifest(output_dir, add={image.path.name: image.sha256 for image in done.values()})
    return [done[index] for index in indices if index in done]

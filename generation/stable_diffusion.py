"""Load a Stable Diffusion pipeline from a local diffusers folder or the Hugging Face cache.

One loader serves the real models (``CompVis/stable-diffusion-v1-4``,
``runwayml/stable-diffusion-v1-5``, ``stabilityai/stable-diffusion-2-1-base`` or a local copy)
and the offline stand-in built by ``generation.tiny_sd``; nothing in it knows which is which
except :func:`weights_provenance`, which reads the stand-in marker file. Every pipeline that
:func:`load_sd_pipeline` returns carries its provenance, so results computed with stand-in
weights are labelled as such and can never pass as real Stable Diffusion results.

Hub ids resolve through the standard cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``~/.cache/huggingface/hub``), read when the function is called, not when the module is
imported. With ``HF_HUB_OFFLINE=1`` nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
    SchedulerMixin,
    StableDiffusionPipeline,
    UniPCMultistepScheduler,
)
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from validation.files import sha256_file

logger = logging.getLogger(__name__)

#: Name of the JSON file that marks a diffusers folder as a FairDerm stand-in (random weights).
STANDIN_MARKER = "FAIRDERM_STANDIN.json"

#: Attribute of a pipeline returned by :func:`load_sd_pipeline` holding its :class:`WeightsProvenance`.
PROVENANCE_ATTR = "fairderm_provenance"

#: File endings counted as weights by :func:`hash_weight_files`.
WEIGHT_SUFFIXES: tuple[str, ...] = (
    ".safetensors",
    ".bin",
    ".ckpt",
    ".pt",
    ".pth",
    ".msgpack",
    ".onnx",
)

#: Pipeline components the loader never loads (see :func:`load_sd_pipeline`).
SKIPPED_COMPONENTS: tuple[str, ...] = ("safety_checker", "feature_extractor")

# name -> (scheduler class, config overrides)
_SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "ddpm": (DDPMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "lms": (LMSDiscreteScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "dpmsolver": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver"}),
    "dpmsolver++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++"}),
    "unipc": (UniPCMultistepScheduler, {}),
}

#: Scheduler names accepted by :func:`load_sd_pipeline` and :func:`swap_scheduler`.
SCHEDULER_NAMES: tuple[str, ...] = tuple(_SCHEDULERS)

_TRUE = {"1", "true", "yes", "on"}


class ModelNotCachedError(FileNotFoundError):
    """A hub id is not in the local Hugging Face cache and may not be downloaded."""


@dataclass(frozen=True)
class WeightsProvenance:
    """Where a pipeline's weights came from, and whether they are a stand-in.

    Attributes:
        model (`str`): The model as requested (hub id or path).
        source (`str`): ``"hub"`` for a hub id resolved through the cache, ``"local"`` for a folder.
        folder (`Path`): The resolved diffusers folder (a cache snapshot for hub ids).
        revision (`str`, *optional*): The cache snapshot's commit hash; ``None`` for local folders.
        standin (`bool`): ``True`` when the folder holds the FairDerm stand-in marker
            (random weights from ``generation.tiny_sd``), ``False`` for real weights.
        sha256 (`str`): Content hash of the weight files, see :func:`hash_weight_files`.
        weight_files (`tuple[str, ...]`): The hashed files, relative to ``folder``.
        marker (`dict`, *optional*): The stand-in marker's content; ``None`` for real weights.
    """

    model: str
    source: Literal["hub", "local"]
    folder: Path
    revision: str | None
    standin: bool
    sha256: str
    weight_files: tuple[str, ...]
    marker: dict[str, Any] | None

    @property
    def label(self) -> str:
        """A short label for reports and image metadata."""
        if self.standin:
            return "STAND-IN: random FairDerm test weights, not a real Stable Diffusion model"
        return "real weights"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, for run records and image metadata."""
        return {
            "model": self.model,
            "source": self.source,
            "folder": str(self.folder),
            "revision": self.revision,
            "standin": self.standin,
            "label": self.label,
            "sha256": self.sha256,
            "weight_files": list(self.weight_files),
            "marker": self.marker,
        }


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment now.

    ``huggingface_hub`` reads these variables once, at import; reading them per call lets tests
    and workers point the cache elsewhere after import.
    """
    env = os.environ
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    hf_home = env.get("HF_HOME")
    if hf_home:
        return Path(os.path.expandvars(hf_home)).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(os.path.expandvars(xdg)).expanduser() / "huggingface" / "hub"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, read from the environment now."""
    from huggingface_hub import constants

    env = os.environ
    flags = (env.get("HF_HUB_OFFLINE", ""), env.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(flag.strip().lower() in _TRUE for flag in flags)


def hash_weight_files(folder: str | os.PathLike[str]) -> tuple[str, tuple[str, ...]]:
    """Hash the weight files of the pipeline components that the loader uses.

    The files are those ending in one of :data:`WEIGHT_SUFFIXES` inside the component folders
    named in ``model_index.json``, except :data:`SKIPPED_COMPONENTS`. The digest is the sha256
    of the lines ``"<relative path>\\t<sha256 of the file>\\n"`` in sorted path order, so it
    changes when any weight file changes, appears, disappears or is renamed.

    Args:
        folder (`str` or `os.PathLike`): A diffusers pipeline folder (with ``model_index.json``).

    Returns:
        `tuple[str, tuple[str, ...]]`: The hex digest and the hashed files relative to ``folder``.

    Raises:
        `FileNotFoundError`: If the folder has no ``model_index.json`` or no weight files.
    """
    root = Path(folder)
    index_path = root / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"folder: {root} has no model_index.json (not a diffusers folder)")
    index = json.loads(index_path.read_text(encoding="utf-8"))
    components = sorted(
        name
        for name, value in index.items()
        if not name.startswith("_")
        and name not in SKIPPED_COMPONENTS
        and isinstance(value, list)
        and value
        and value[0] is not None
    )
    files: list[str] = []
    for component in components:
        component_dir = root / component
        if not component_dir.is_dir():
            continue
        for path in component_dir.rglob("*"):
            if path.is_file() and path.name.endswith(WEIGHT_SUFFIXES):
                files.append(path.relative_to(root).as_posix())
    if not files:
        raise FileNotFoundError(
            f"folder: {root} has no weight files in its components ({', '.join(components)})"
        )
    files.sort()
    digest = hashlib.sha256()
    for relative in files:
        digest.update(f"{relative}\t{sha256_file(root / relative)}\n".encode())
    return digest.hexdigest(), tuple(files)


def _read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / STANDIN_MARKER
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        # An unreadable marker still marks a stand-in: never let it pass as real.
        return {"error": f"unreadable marker: {error}"}
    return content if isinstance(content, dict) else {"error": "marker is not a JSON object"}


def _not_cached_error(repo_id: str, cache: Path, why: str) -> ModelNotCachedError:
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    return ModelNotCachedError(
        f"model: {repo_id!r} is not in the Hugging Face cache (searched {repo_dir}/snapshots/ "
        f"under HF_HUB_CACHE={cache}) and {why}. To fix: run `hf download {repo_id}` on a "
        "machine with internet and copy its cache here, point HF_HOME or HF_HUB_CACHE at a "
        "cache that holds it, pass a local diffusers folder instead, or, for tests only, stage "
        "the random stand-in with generation.tiny_sd.save_tiny_sd + stage_in_hf_cache."
    )


def _resolve_model(
    model: str | os.PathLike[str], *, local_files_only: bool, why: str
) -> tuple[Path, Literal["hub", "local"], str | None]:
    """Resolve ``model`` to a local diffusers folder: (folder, source, revision)."""
    if isinstance(model, os.PathLike) or Path(model).expanduser().is_dir():
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"model: folder {folder} does not exist")
        if not (folder / "model_index.json").is_file():
            raise FileNotFoundError(
                f"model: {folder} has no model_index.json, so it is not a diffusers pipeline "
                "folder (convert single-file checkpoints with diffusers first)"
            )
        return folder.resolve(), "local", None

    repo_id = str(model)
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise FileNotFoundError(
            f"model: {repo_id!r} is neither an existing folder nor a hub id like 'org/name'"
        ) from None
    cache = hub_cache_dir()
    try:
        folder = Path(
            StableDiffusionPipeline.download(
                repo_id,
                cache_dir=cache,
                local_files_only=local_files_only,
                # Passing the skipped components keeps their weights out of the download.
                **dict.fromkeys(SKIPPED_COMPONENTS),
            )
        )
    except FileNotFoundError as error:  # includes huggingface_hub's LocalEntryNotFoundError
        if local_files_only:
            raise _not_cached_error(repo_id, cache, why) from error
        raise
    except OSError as error:
        # Online but the download failed (no network, gated repo, ...) and nothing is cached:
        # diffusers' message does not say where it looked, so say it and keep the cause.
        snapshots = cache / f"models--{repo_id.replace('/', '--')}" / "snapshots"
        if local_files_only or (snapshots.is_dir() and any(snapshots.iterdir())):
            raise
        raise _not_cached_error(repo_id, cache, f"could not be downloaded ({error})") from error
    revision = folder.name if folder.parent.name == "snapshots" else None
    return folder, "hub", revision


def weights_provenance(model: str | os.PathLike[str]) -> WeightsProvenance:
    """Tell whether a model's weights are a FairDerm stand-in or real, with a content hash.

    A folder is a stand-in when it holds :data:`STANDIN_MARKER` (written by
    ``generation.tiny_sd.save_tiny_sd``); the marker is copied with the folder, including into
    the hub cache by ``stage_in_hf_cache``. This never downloads anything.

    Args:
        model (`str` or `os.PathLike`): A local diffusers folder or a hub id in the local cache.

    Returns:
        `WeightsProvenance`: Source, resolved folder, revision, stand-in flag and weight hash.

    Raises:
        `ModelNotCachedError`: If ``model`` is a hub id that is not in the cache.
        `FileNotFoundError`: If ``model`` is neither a diffusers folder nor a valid hub id.
    """
    folder, source, revision = _resolve_model(
        model, local_files_only=True, why="weights_provenance never downloads"
    )
    return _provenance_of(str(model), folder, source, revision)


def _provenance_of(
    model: str, folder: Path, source: Literal["hub", "local"], revision: str | None
) -> WeightsProvenance:
    sha256, files = hash_weight_files(folder)
    marker = _read_marker(folder)
    return WeightsProvenance(
        model=model,
        source=source,
        folder=folder,
        revision=revision,
        standin=marker is not None,
        sha256=sha256,
        weight_files=files,
        marker=marker,
    )


def _scheduler_entry(scheduler: str) -> tuple[type[SchedulerMixin], dict[str, Any]]:
    key = scheduler.strip().lower().replace("-", "_") if isinstance(scheduler, str) else None
    if key not in _SCHEDULERS:
        raise ValueError(
            f"scheduler: unknown name {scheduler!r} (known: {', '.join(SCHEDULER_NAMES)})"
        )
    return _SCHEDULERS[key]


def swap_scheduler(pipe: StableDiffusionPipeline, scheduler: str) -> StableDiffusionPipeline:
    """Replace the pipeline's scheduler by another algorithm with the same noise schedule.

    Args:
        pipe (`StableDiffusionPipeline`): The pipeline to change in place.
        scheduler (`str`): One of :data:`SCHEDULER_NAMES` (case-insensitive; ``-`` may stand
            for ``_``), e.g. ``"ddim"``, ``"dpmsolver++"``, ``"pndm"``, ``"euler"``, ``"euler_a"``.

    Returns:
        `StableDiffusionPipeline`: The same pipeline, for chaining.

    Raises:
        `ValueError`: If the name is unknown.
    """
    cls, overrides = _scheduler_entry(scheduler)
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)
    return pipe


def load_sd_pipeline(
    model: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    scheduler: str | None = None,
) -> StableDiffusionPipeline:
    """Load a Stable Diffusion 1.x/2.x pipeline with the safety checker off.

    The safety checker is not loaded (``safety_checker=None, feature_extractor=None,
    requires_safety_checker=False``): its NSFW classifier fires on close-ups of skin and
    replaces such images by black ones, which would silently drop dermoscopic images, and
    more often for some skin types than others. FairDerm's outputs are medical images
    reviewed by clinicians, not public content.

    The returned pipeline carries a :class:`WeightsProvenance` in the attribute named by
    :data:`PROVENANCE_ATTR` (``pipe.fairderm_provenance``; read it with
    :func:`pipeline_provenance`). Record it with every result: ``standin`` is ``True`` for the
    random-weight test kit of ``generation.tiny_sd``, and such results are not real results.

    Args:
        model (`str` or `os.PathLike`): A local diffusers folder (loaded with
            ``local_files_only=True``) or a hub id such as ``"runwayml/stable-diffusion-v1-5"``,
            resolved through the standard Hugging Face cache. With ``HF_HUB_OFFLINE=1`` only
            the cache is used; otherwise missing files are downloaded (the safety checker's
            weights are never downloaded). A `pathlib.Path` is always taken as a folder.
        device (`str` or `torch.device`, *optional*, defaults to `"cpu"`): Where to move the pipeline.
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): Weight dtype
            (``torch.float16`` only on a GPU).
        scheduler (`str`, *optional*): Replace the folder's scheduler by one of
            :data:`SCHEDULER_NAMES`, keeping its noise schedule; ``None`` keeps it.

    Returns:
        `StableDiffusionPipeline`: The pipeline, on ``device``, with ``fairderm_provenance`` set.

    Raises:
        `ValueError`: If ``scheduler`` is not a known name (checked before loading anything).
        `ModelNotCachedError`: If a hub id is not in the cache and ``HF_HUB_OFFLINE`` is set.
        `FileNotFoundError`: If ``model`` is neither a diffusers folder nor a valid hub id.
    """
    if scheduler is not None:
        _scheduler_entry(scheduler)  # fail before loading anything
    folder, source, revision = _resolve_model(
        model,
        local_files_only=hub_offline(),
        why="downloads are off (HF_HUB_OFFLINE is set)",
    )
    provenance = _provenance_of(str(model), folder, source, revision)
    if provenance.standin:
        logger.warning(
            "model: %s is a FairDerm stand-in with random weights (%s); "
            "its images are for tests only and are labelled as such",
            model,
            folder,
        )
    pipe = StableDiffusionPipeline.from_pretrained(
        folder,
        dtype=dtype,
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if scheduler is not None:
        swap_scheduler(pipe, scheduler)
    pipe = pipe.to(device)
    setattr(pipe, PROVENANCE_ATTR, provenance)
    return pipe


def pipeline_provenance(pipe: StableDiffusionPipeline) -> WeightsProvenance:
    """The provenance that :func:`load_sd_pipeline` attached to a pipeline.

    Args:
        pipe (`StableDiffusionPipeline`): A pipeline returned by :func:`load_sd_pipeline`.

    Raises:
        `ValueError`: If the pipeline was not loaded by :func:`load_sd_pipeline` (for example one
            built with ``from_pipe``): unknown weights are never assumed to be real.
    """
    provenance = getattr(pipe, PROVENANCE_ATTR, None)
    if not isinstance(provenance, WeightsProvenance):
        raise ValueError(
            "pipe: has no FairDerm provenance; load it with generation.stable_diffusion."
            "load_sd_pipeline so results can be labelled real or stand-in"
        )
    return provenance

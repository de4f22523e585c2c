"""Crash-safe training checkpoints: write atomically, verify, resume from the newest good one.

Layout of ``<output_dir>/checkpoints/step-0000200/`` (the folder is built under a temporary name
and renamed into place by ``validation.files.atomic_directory``)::

    fairderm_config.json     the run's ConditionalDiffusionConfig
    unet.safetensors         training weights
    ema_unet.safetensors     EMA weights (same keys as the UNet's parameters)
    optimizer.pt             AdamW state (torch.save, loads with weights_only=True)
    rng_state.safetensors    torch CPU (and CUDA) RNG, batch-sampler and training generators
    trainer_state.json       step, EMA counters, balancing state, loss history, Python/NumPy RNG
    COMPLETE.json            written last: step and the sha256 of every file above

A checkpoint counts only if ``COMPLETE.json`` exists and, when verified, every hash matches, so
a truncated or half-copied newest checkpoint is skipped and resume falls back to the previous.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

from generation.conditional.balancing import BalancedBatchSampler, LossReweighter
from generation.conditional.config import ConditionalDiffusionConfig
from validation.files import TEMP_SUFFIX, atomic_directory, atomic_write_text, sha256_file

logger = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
CONFIG_NAME = "fairderm_config.json"
_NAME = re.compile(r"^step-(\d{7,})$")

#: Config fields that may change between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = frozenset(
    {
        "train_steps",
        "checkpoint_every",
        "keep_checkpoints",
        "sample_every",
        "log_every",
        "guidance_scale",
        "num_inference_steps",
        "sampler",
        # fp32 weights and optimiser state either way: only the forward pass's arithmetic differs.
        "mixed_precision",
    }
)


def checkpoint_path(root: Path, step: int) -> Path:
    """``root/step-XXXXXXX`` for ``step``."""
    return root / f"step-{step:07d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every checkpoint-named folder under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child))
    return sorted(found)


def is_complete(path: Path, *, verify: bool = True) -> bool:
    """Whether ``path`` holds a finished checkpoint (with ``verify``, every sha256 matches).

    Args:
        path (`Path`): A checkpoint folder.
        verify (`bool`, *optional*, defaults to `True`): Re-hash every file.
    """
    try:
        marker = json.loads((path / MARKER).read_text(encoding="utf-8"))
        files = marker["files"]
        for name, digest in files.items():
            file = path / name
            if not file.is_file() or (verify and sha256_file(file) != digest):
                return False
        return CONFIG_NAME in files
    except (OSError, ValueError, KeyError, TypeError):
        return False


def latest_complete_checkpoint(root: Path) -> Path | None:
    """The newest verified checkpoint under ``root``; newer broken ones are logged and skipped.

    Args:
        root (`Path`): The ``checkpoints`` folder.
    """
    for step, path in reversed(list_checkpoints(root)):
        if is_complete(path):
            return path
        logger.warning("Skipping incomplete or corrupt checkpoint %s (step %d)", path, step)
    return None


def _remove_tree(path: Path) -> None:
    """Rename a folder to a sweepable temporary name, then delete it."""
    doomed = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    doomed.rmdir()
    path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def prune_checkpoints(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (and broken ones older than those).

    Args:
        root (`Path`): The ``checkpoints`` folder.
        keep (`int`): Complete checkpoints to keep.
    """
    checkpoints = list_checkpoints(root)
    complete = [(s, p) for s, p in checkpoints if is_complete(p, verify=False)]
    kept = {p for _, p in complete[-keep:]}
    newest_kept = max((s for s, p in complete if p in kept), default=-1)
    for step, path in checkpoints:
        if path not in kept and (step < newest_kept or is_complete(path, verify=False)):
            logger.info("Removing old checkpoint %s", path)
            _remove_tree(path)


def _python_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_rng_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": [int(k) for k in keys],
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def save_checkpoint(
    root: Path,
    step: int,
    *,
    config: ConditionalDiffusionConfig,
    unet: UNet2DModel,
    ema: EMAModel,
    optimizer: torch.optim.Optimizer,
    sampler: BalancedBatchSampler,
    generator: torch.Generator,
    reweighter: LossReweighter,
    trainer_state: dict[str, Any],
) -> Path:
    """Write checkpoint ``step`` atomically (replacing a broken leftover of the same step).

    Args:
        root (`Path`): The ``checkpoints`` folder.
        step (`int`): Optimiser steps completed.
        config (`ConditionalDiffusionConfig`): Saved as ``fairderm_config.json``.
        unet (`UNet2DModel`), ema (`EMAModel`), optimizer (`torch.optim.Optimizer`): Training state.
        sampler (`BalancedBatchSampler`), generator (`torch.Generator`): Batch and noise RNGs.
        reweighter (`LossReweighter`): Level (c) state.
        trainer_state (`dict`): JSON-ready loop state (loss history and the like).

    Returns:
        The checkpoint folder.
    """
    target = checkpoint_path(root, step)
    if target.exists():
        _remove_tree(target)
    names = [name for name, _ in unet.named_parameters()]
    with atomic_directory(target) as tmp:
        atomic_write_text(tmp / CONFIG_NAME, config.to_json())
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in unet.state_dict().items()},
            tmp / "unet.safetensors",
        )
        save_file(
            {
                n: p.detach().cpu().contiguous()
                for n, p in zip(names, ema.shadow_params, strict=True)
            },
            tmp / "ema_unet.safetensors",
        )
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {
            "torch_cpu": torch.get_rng_state(),
            "sampler": sampler.state_dict()["generator"],
            "train": generator.get_state(),
        }
        if torch.cuda.is_available():
            for index, state in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"cuda_{index}"] = state
        save_file(rng, tmp / "rng_state.safetensors")
        ema_state = {k: v for k, v in ema.state_dict().items() if k != "shadow_params"}
        state = {
            "step": step,
            "ema": ema_state,
            "balancing": reweighter.state_dict(),
            "python_random": _python_rng_state(),
            "numpy_random": _numpy_rng_state(),
            **trainer_state,
        }
        atomic_write_text(tmp / "trainer_state.json", json.dumps(state, indent=1))
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_text(tmp / MARKER, json.dumps({"step": step, "files": files}, indent=1))
    return target


def check_resumable(saved: ConditionalDiffusionConfig, current: ConditionalDiffusionConfig) -> None:
    """Raise ``ValueError`` if ``current`` changes a field that a resumed run must keep.

    Args:
        saved (`ConditionalDiffusionConfig`): The checkpoint's config.
        current (`ConditionalDiffusionConfig`): The config of the run that resumes it.
    """
    old, new = saved.to_dict(), current.to_dict()
    changed = sorted(k for k in old if k not in RESUMABLE_CHANGES and old[k] != new.get(k))
    if changed:
        raise ValueError(
            f"config: differs from the checkpoint's in {', '.join(changed)}; "
            "use a new output_dir or resume=False in an empty one"
        )


def load_checkpoint(
    path: Path,
    *,
    unet: UNet2DModel,
    ema: EMAModel,
    optimizer: torch.optim.Optimizer,
    sampler: BalancedBatchSampler,
    generator: torch.Generator,
    reweighter: LossReweighter,
    device: torch.device,
) -> dict[str, Any]:
    """Restore everything ``save_checkpoint`` wrote, in place; returns the trainer state dict.

    Args:
        path (`Path`): A complete checkpoint folder.
        unet, ema, optimizer, sampler, generator, reweighter: Freshly built training objects.
        device (`torch.device`): Where the model lives.
    """
    unet.load_state_dict(load_file(path / "unet.safetensors", device=str(device)))
    shadow = load_file(path / "ema_unet.safetensors", device=str(device))
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    names = [name for name, _ in unet.named_parameters()]
    ema.load_state_dict({**state["ema"], "shadow_params": [shadow[n] for n in names]})
    optimizer.load_state_dict(
        torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    )
    rng = load_file(path / "rng_state.safetensors")
    torch.set_rng_state(rng["torch_cpu"])
    sampler.load_state_dict({"generator": rng["sampler"]})
    generator.set_state(rng["train"])
    if torch.cuda.is_available():
        cuda = [rng[f"cuda_{i}"] for i in range(torch.cuda.device_count()) if f"cuda_{i}" in rng]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    reweighter.load_state_dict(state["balancing"])
    version, internal, gauss = state["python_random"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy_random"]
    np.random.set_state(
        (
            numpy_state["name"],
            np.array(numpy_state["keys"], dtype=np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    return state

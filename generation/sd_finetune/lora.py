"""LoRA fine-tuning of Stable Diffusion with peft, captions phrased with FST and diagnosis.

Adapters go on the UNet's attention projections (and, optionally, the text encoder's). The
frozen base is cast to the mixed-precision dtype while the adapters stay fp32 (diffusers'
``cast_training_params``), so fp16 training never asks the scaler to unscale fp16 gradients.

Output, loadable with stock diffusers (``pipe.load_lora_weights(folder)``)::

    <output_dir>/lora/pytorch_lora_weights.safetensors
    <output_dir>/lora/textual_inversion/...     the tokens the captions used, if any
    <output_dir>/fairderm_config.json

The safetensors header keeps diffusers' adapter metadata (so alpha and rank load exactly) and
FairDerm's training record under ``fairderm_training`` (base model and its weights hash,
dataset, rank, alpha, steps, learning rate, seed, caption template, hashes of the training
images): read it with :func:`read_lora_metadata`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from generation.conditional.data import TrainingRecord
from generation.conditional.training import TrainingCallback
from generation.sd_finetune.config import LoraTrainingConfig, caption, condition_token
from generation.sd_finetune.textual_inversion import FOLDER as TI_FOLDER
from generation.sd_finetune.textual_inversion import (
    load_learned_tokens,
    tokens_config,
    tokens_folder,
)
from generation.sd_finetune.training import (
    DTYPES,
    Method,
    SDTrainingResult,
    cast_frozen,
    condition_prompts,
    load_pipeline,
    train_loop,
)
from validation.files import atomic_directory, sha256_file

FOLDER = "lora"
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "fairderm_training"


def lora_configs(config: LoraTrainingConfig) -> tuple[LoraConfig, LoraConfig | None]:
    """The peft configs of the UNet adapter and (if trained) the text encoder's."""
    unet = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        init_lora_weights="gaussian",
        target_modules=list(config.target_modules),
    )
    text = None
    if config.train_text_encoder:
        text = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            init_lora_weights="gaussian",
            target_modules=list(config.text_target_modules),
        )
    return unet, text


def _trainable(module: torch.nn.Module, prefix: str) -> dict[str, torch.nn.Parameter]:
    return {f"{prefix}.{n}": p for n, p in module.named_parameters() if p.requires_grad}


def train_lora(
    config: LoraTrainingConfig,
    records: Sequence[TrainingRecord],
    output_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    callbacks: TrainingCallback | None = None,
    dataset: str = "",
) -> SDTrainingResult:
    """Train LoRA adapters on ``records`` and save them (see the module docstring).

    Args:
        dataset (`str`, *optional*): A description of the training data for the metadata.

    Resumes from the newest complete checkpoint in ``output_dir``.
    """
    if not isinstance(config, LoraTrainingConfig):
        raise ValueError(f"config: expected a LoraTrainingConfig, got {type(config).__name__}")
    output_dir = Path(output_dir)
    pipe = load_pipeline(config, device)
    tokens: list[str] = []
    if config.textual_inversion:
        tokens = load_learned_tokens(pipe, config.textual_inversion)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    weight_dtype = DTYPES[config.mixed_precision]
    cast_frozen(pipe, weight_dtype, keep_text_encoder=False)
    unet_config, text_config = lora_configs(config)
    torch.manual_seed(config.seed)  # the adapters' initial weights
    pipe.unet.add_adapter(unet_config)
    if text_config is not None:
        # peft directly: transformers' add_adapter wants peft >= 0.22, which diffusers 0.42's
        # pins do not allow; the adapter and its state dict are the same.
        inject_adapter_in_model(text_config, pipe.text_encoder)
        pipe.text_encoder.train()
    cast_training_params([pipe.unet, pipe.text_encoder], dtype=torch.float32)
    if config.gradient_checkpointing:
        pipe.unet.enable_gradient_checkpointing()
        if text_config is not None:
            pipe.text_encoder.gradient_checkpointing_enable()
    params = {**_trainable(pipe.unet, "unet"), **_trainable(pipe.text_encoder, "text_encoder")}

    ti_tokens: dict[tuple[int, str], str] = {}
    if tokens:
        scheme = tokens_config(config.textual_inversion).token_scheme
        ti_tokens = {
            (f, d): condition_token(scheme, f, d) for f in config.fsts for d in config.diagnoses
        }

    def caption_of(fst: int, diagnosis: str) -> str:
        token = ti_tokens.get((fst, diagnosis), "")
        if tokens and token not in tokens:
            raise ValueError(f"textual_inversion: has no token for FST {fst} x {diagnosis}")
        return caption(config.caption_template, fst, diagnosis, token)

    def load_state(saved: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(params) - set(saved))
        if missing:
            raise ValueError(f"checkpoint: lacks {len(missing)} adapter tensors, e.g. {missing[0]}")
        with torch.no_grad():
            for name, param in params.items():
                param.copy_(saved[name])

    method = Method(
        parameters=list(params.values()),
        caption=lambda r: caption_of(int(r.fst), r.diagnosis),
        after_step=lambda: None,
        state=lambda: {name: p.detach() for name, p in params.items()},
        load_state=load_state,
    )
    conditions = sorted({(int(r.fst), r.diagnosis) for r in records})
    conditions = [c for c in conditions if c[0] in config.fsts and c[1] in config.diagnoses]
    result = train_loop(
        config,
        pipe,
        method,
        records,
        output_dir,
        callbacks=callbacks,
        sample_prompts=condition_prompts(conditions, caption_of),
    )
    if not result.stopped:
        record = training_record(config, result, records, dataset)
        result.output_path = save_lora(pipe, config, output_dir, record)
    return result


def training_record(
    config: LoraTrainingConfig,
    result: SDTrainingResult,
    records: Sequence[TrainingRecord],
    dataset: str,
) -> dict[str, Any]:
    """What goes into the safetensors header under ``fairderm_training``."""
    images = hashlib.sha256()
    for path in sorted(str(r.path) for r in records):
        images.update(sha256_file(path).encode())
    return {
        "kind": config.KIND,
        "base_model": config.base_model,
        "base_model_weights": {
            k: result.base_model.get(k) for k in ("sha256", "standin", "label", "revision")
        },
        "dataset": dataset,
        "training_images": len(records),
        "training_images_sha256": images.hexdigest(),
        "rank": config.rank,
        "alpha": config.alpha,
        "dropout": config.dropout,
        "target_modules": list(config.target_modules),
        "train_text_encoder": config.train_text_encoder,
        "steps": result.final_step,
        "learning_rate": config.learning_rate,
        "batch_size": config.batch_size,
        "resolution": config.resolution,
        "mixed_precision": config.mixed_precision,
        "seed": config.seed,
        "caption_template": config.caption_template,
        "textual_inversion": bool(config.textual_inversion),
        "config": config.to_dict(),
    }


def save_lora(
    pipe: StableDiffusionPipeline,
    config: LoraTrainingConfig,
    output_dir: Path,
    record: dict[str, Any],
) -> Path:
    """Write ``lora/`` atomically: stock-loadable weights with the training record in the header."""
    unet_config, text_config = lora_configs(config)
    unet_layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    text_layers = (
        convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder))
        if text_config is not None
        else None
    )
    target = output_dir / FOLDER
    with atomic_directory(target) as tmp:
        StableDiffusionPipeline.save_lora_weights(
            save_directory=tmp,
            unet_lora_layers=unet_layers,
            text_encoder_lora_layers=text_layers,
            unet_lora_adapter_metadata=unet_config.to_dict(),
            text_encoder_lora_adapter_metadata=text_config.to_dict() if text_config else None,
            safe_serialization=True,
        )
        weights = tmp / WEIGHTS_NAME
        with safe_open(str(weights), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        metadata[METADATA_KEY] = json.dumps(record, sort_keys=True)
        save_file(load_file(weights), weights, metadata=metadata)
        if config.textual_inversion:
            shutil.copytree(tokens_folder(config.textual_inversion), tmp / TI_FOLDER)
        (tmp / "fairderm_config.json").write_text(config.to_json(), encoding="utf-8")
    return target


def read_lora_metadata(path: str | Path) -> dict[str, Any]:
    """The ``fairderm_training`` record of a LoRA file (or of the ``lora`` folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"path: {path} has no {METADATA_KEY} record (not a FairDerm LoRA)")
    return json.loads(metadata[METADATA_KEY])


def load_lora(pipe: StableDiffusionPipeline, folder: str | Path) -> StableDiffusionPipeline:
    """Load a FairDerm LoRA output into ``pipe`` with diffusers' loaders (and its tokens)."""
    folder = Path(folder)
    if (folder / FOLDER / WEIGHTS_NAME).is_file():
        folder = folder / FOLDER
    if (folder / TI_FOLDER).is_dir():
        load_learned_tokens(pipe, folder / TI_FOLDER)
    pipe.load_lora_weights(str(folder))
    return pipe

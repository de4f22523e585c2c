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

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
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
    load_pipeline,
    sample_conditions,
    train_loop,
)
from validation.files import atomic_directory, sha256_file

FOLDER = "lora"
WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
METADATA_KEY = "fairderm_training"
CONDITIONS_NAME = "condition_embeddings.safetensors"


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


class ConditionEmbeddings(torch.nn.Module):
    """Learned FST (and diagnosis) tokens appended to the text states the UNet attends to.

    ``forward(hidden, fsts, diagnoses)`` returns ``hidden`` with one token per FST (and one per
    diagnosis) added at the end of the sequence; ``null(hidden)`` appends zeros instead, for
    the unconditional half of classifier-free guidance. Trained in fp32 with the LoRA.
    """

    def __init__(
        self, dim: int, diagnoses: Sequence[str] = (), *, seed: int = 0, std: float = 0.02
    ):
        super().__init__()
        self.diagnoses = tuple(diagnoses)
        generator = torch.Generator().manual_seed(seed)
        self.fst = torch.nn.Parameter(torch.randn(6, dim, generator=generator) * std)
        self.diagnosis = (
            torch.nn.Parameter(torch.randn(len(self.diagnoses), dim, generator=generator) * std)
            if self.diagnoses
            else None
        )

    @property
    def extra_tokens(self) -> int:
        return 1 + (self.diagnosis is not None)

    def forward(
        self, hidden: torch.Tensor, fsts: Sequence[int], diagnoses: Sequence[str]
    ) -> torch.Tensor:
        rows = [self.fst[torch.as_tensor([f - 1 for f in fsts], device=self.fst.device)]]
        if self.diagnosis is not None:
            try:
                index = [self.diagnoses.index(d) for d in diagnoses]
            except ValueError:
                raise ValueError(
                    f"diagnoses: {list(diagnoses)} outside {list(self.diagnoses)}"
                ) from None
            rows.append(self.diagnosis[torch.as_tensor(index, device=self.fst.device)])
        extra = torch.stack(rows, dim=1).to(hidden.device, hidden.dtype)
        return torch.cat([hidden, extra], dim=1)

    def null(self, hidden: torch.Tensor) -> torch.Tensor:
        zeros = hidden.new_zeros(hidden.shape[0], self.extra_tokens, hidden.shape[2])
        return torch.cat([hidden, zeros], dim=1)

    def save(self, path: Path) -> None:
        tensors = {"fst": self.fst.detach().float().cpu().contiguous()}
        if self.diagnosis is not None:
            tensors["diagnosis"] = self.diagnosis.detach().float().cpu().contiguous()
        save_file(tensors, path, metadata={"diagnoses": json.dumps(list(self.diagnoses))})

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu") -> ConditionEmbeddings:
        with safe_open(str(path), framework="pt") as handle:
            diagnoses = json.loads((handle.metadata() or {}).get("diagnoses", "[]"))
        tensors = load_file(path)
        module = cls(tensors["fst"].shape[1], diagnoses)
        with torch.no_grad():
            module.fst.copy_(tensors["fst"])
            if module.diagnosis is not None:
                module.diagnosis.copy_(tensors["diagnosis"])
        return module.to(device)

    def pipeline_inputs(
        self,
        pipe: StableDiffusionPipeline,
        prompts: Sequence[str],
        conditions: Sequence[tuple[int, str]],
    ) -> dict[str, torch.Tensor]:
        """``prompt_embeds`` and ``negative_prompt_embeds`` for a pipeline call."""
        positive, negative = pipe.encode_prompt(
            list(prompts), pipe.device, 1, True, negative_prompt=[""] * len(prompts)
        )
        with torch.no_grad():
            positive = self(positive, [c[0] for c in conditions], [c[1] for c in conditions])
        return {"prompt_embeds": positive, "negative_prompt_embeds": self.null(negative)}


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

    With ``adapters="per_fst"``, one adapter per skin type is trained in turn (in
    ``output_dir/fst<n>/``) and the output holds ``lora/fst<n>/`` for each.

    Args:
        dataset (`str`, *optional*): A description of the training data for the metadata.

    Resumes from the newest complete checkpoint in ``output_dir``.
    """
    if not isinstance(config, LoraTrainingConfig):
        raise ValueError(f"config: expected a LoraTrainingConfig, got {type(config).__name__}")
    output_dir = Path(output_dir)
    if config.adapters == "shared":
        return _train_adapter(config, records, output_dir, device, callbacks, dataset)
    fsts = [f for f in config.fsts if any(int(r.fst) == f for r in records)]
    if not fsts:
        raise ValueError(f"records: none with FST in {list(config.fsts)}")
    results = []
    for position, fst in enumerate(fsts):
        single = dataclasses.replace(config, fsts=(fst,), adapters="shared")
        offset = OffsetCallbacks(
            callbacks, position * config.train_steps, len(fsts) * config.train_steps
        )
        result = _train_adapter(single, records, output_dir / f"fst{fst}", device, offset, dataset)
        results.append((fst, result))
        if result.stopped:
            break
    last = results[-1][1]
    combined = SDTrainingResult(
        final_step=sum(r.final_step for _, r in results),
        total_steps=len(fsts) * config.train_steps,
        stopped=last.stopped,
        checkpoint_path=last.checkpoint_path,
        resumed_from=next((r.resumed_from for _, r in results if r.resumed_from), None),
        final_loss=last.final_loss,
        loss_history=[x for _, r in results for x in r.loss_history],
        seconds=sum(r.seconds for _, r in results),
        base_model=last.base_model,
    )
    if not last.stopped:
        target = output_dir / FOLDER
        with atomic_directory(target) as tmp:
            for fst, result in results:
                if result.output_path is None:
                    raise RuntimeError(f"the FST {fst} adapter finished without an output")
                shutil.copytree(result.output_path, tmp / f"fst{fst}")
            (tmp / "fairderm_config.json").write_text(config.to_json(), encoding="utf-8")
        combined.output_path = target
    return combined


class OffsetCallbacks(TrainingCallback):
    """Forwards one per-FST adapter's progress as part of the whole run's."""

    def __init__(self, inner: TrainingCallback | None, offset: int, total: int):
        self.inner = inner or TrainingCallback()
        self.offset, self.total = offset, total

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        self.inner.on_step(self.offset + step, self.total, loss, info)

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.inner.on_checkpoint(self.offset + step, path)

    def on_sample_grid(self, step: int, image: Any) -> None:
        self.inner.on_sample_grid(self.offset + step, image)

    def should_stop(self) -> bool:
        return self.inner.should_stop()


def _train_adapter(
    config: LoraTrainingConfig,
    records: Sequence[TrainingRecord],
    output_dir: Path,
    device: str | torch.device,
    callbacks: TrainingCallback | None,
    dataset: str,
) -> SDTrainingResult:
    records = [r for r in records if r.fst in config.fsts and r.diagnosis in config.diagnoses]
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
    embeddings: ConditionEmbeddings | None = None
    if config.condition_embeddings != "none":
        diagnoses = config.diagnoses if config.condition_embeddings == "fst_diagnosis" else ()
        width = pipe.text_encoder.config.hidden_size
        embeddings = ConditionEmbeddings(width, diagnoses, seed=config.seed).to(pipe.device)
        params.update({f"conditions.{n}": p for n, p in embeddings.named_parameters()})

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

    conditions = sorted({(int(r.fst), r.diagnosis) for r in records})
    conditions = [c for c in conditions if c[0] in config.fsts and c[1] in config.diagnoses]
    shown = sample_conditions(conditions)
    encode = None
    sample_inputs = None
    if embeddings is not None:
        module = embeddings

        def encode(ids: torch.Tensor, batch: Sequence[TrainingRecord]) -> torch.Tensor:
            hidden = pipe.text_encoder(ids)[0]
            return module(hidden, [int(r.fst) for r in batch], [r.diagnosis for r in batch])

        def sample_inputs(prompts: Sequence[str]) -> dict[str, Any]:
            return module.pipeline_inputs(pipe, prompts, shown)

    method = Method(
        parameters=list(params.values()),
        caption=lambda r: caption_of(int(r.fst), r.diagnosis),
        after_step=lambda: None,
        state=lambda: {name: p.detach() for name, p in params.items()},
        load_state=load_state,
        encode=encode,
        sample_inputs=sample_inputs,
    )
    result = train_loop(
        config,
        pipe,
        method,
        records,
        output_dir,
        callbacks=callbacks,
        sample_prompts=[caption_of(f, d) for f, d in shown],
    )
    if not result.stopped:
        record = training_record(config, result, records, dataset)
        result.output_path = save_lora(pipe, config, output_dir, record, embeddings)
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
    embeddings: ConditionEmbeddings | None = None,
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
        if embeddings is not None:
            embeddings.save(tmp / CONDITIONS_NAME)
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


@dataclass
class LoadedLora:
    """A FairDerm LoRA output loaded into a pipeline.

    Args:
        pipe: The pipeline, with the adapters (and learned tokens) loaded.
        config (`LoraTrainingConfig`): The training config.
        adapters (`dict[int, str]`): Per-FST outputs: the adapter name of each skin type
            (select with ``pipe.set_adapters``); empty for one shared adapter.
        embeddings (`dict`): Condition embeddings by skin type (per-FST outputs) or under
            ``None`` (shared); empty without them.
        folder (`Path`): The ``lora`` folder.
    """

    pipe: StableDiffusionPipeline
    config: LoraTrainingConfig
    adapters: dict[int, str]
    embeddings: dict[int | None, ConditionEmbeddings]
    folder: Path

    def embeddings_for(self, fst: int) -> ConditionEmbeddings | None:
        return self.embeddings.get(fst, self.embeddings.get(None))


def lora_folder(folder: str | Path) -> Path:
    """The ``lora`` folder, given it or the output folder holding it."""
    folder = Path(folder)
    if (folder / FOLDER / "fairderm_config.json").is_file():
        folder = folder / FOLDER
    if not (folder / "fairderm_config.json").is_file():
        raise FileNotFoundError(f"folder: {folder} is not a FairDerm LoRA output")
    return folder


def load_lora_output(pipe: StableDiffusionPipeline, folder: str | Path) -> LoadedLora:
    """Load a FairDerm LoRA output into ``pipe`` with diffusers' loaders (see ``LoadedLora``)."""
    folder = lora_folder(folder)
    config = LoraTrainingConfig.from_dict(
        json.loads((folder / "fairderm_config.json").read_text(encoding="utf-8"))
    )
    if config.adapters == "per_fst":
        parts = {int(sub.name[3:]): sub for sub in folder.glob("fst[1-6]") if sub.is_dir()}
    else:
        parts = {0: folder}
    adapters: dict[int, str] = {}
    embeddings: dict[int | None, ConditionEmbeddings] = {}
    tokens_loaded = False
    for fst, part in sorted(parts.items()):
        if (part / TI_FOLDER).is_dir() and not tokens_loaded:
            load_learned_tokens(pipe, part / TI_FOLDER)
            tokens_loaded = True
        key = fst if config.adapters == "per_fst" else None
        if key is None:
            pipe.load_lora_weights(str(part))
        else:
            adapters[key] = f"fst{key}"
            pipe.load_lora_weights(str(part), adapter_name=adapters[key])
        if (part / CONDITIONS_NAME).is_file():
            embeddings[key] = ConditionEmbeddings.load(part / CONDITIONS_NAME, pipe.device)
    return LoadedLora(pipe, config, adapters, embeddings, folder)


def load_lora(pipe: StableDiffusionPipeline, folder: str | Path) -> StableDiffusionPipeline:
    """Load a FairDerm LoRA output into ``pipe``; return the pipeline."""
    return load_lora_output(pipe, folder).pipe

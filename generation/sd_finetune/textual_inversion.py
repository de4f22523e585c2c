"""Textual inversion: learn one token per condition (FST x diagnosis, FST, or FST group).

New tokens are added to the tokenizer and their embedding rows start from an existing word
plus a little noise. Only those rows train: the whole embedding matrix is the optimiser's
parameter (as in the reference implementations), and after every step all other rows are put
back, so the base vocabulary never moves.

Output, loadable with stock diffusers (``pipe.load_textual_inversion(path, token=token)``)::

    <output_dir>/textual_inversion/tokens.json                 {token: "<slug>/learned_embeds.safetensors"}
    <output_dir>/textual_inversion/<slug>/learned_embeds.safetensors   {token: embedding}
    <output_dir>/fairderm_config.json

One file per token because diffusers' loader reads one token (or one multi-vector concept)
per file; :func:`load_learned_tokens` loads them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import save_file

from generation.conditional.checkpoints import CONFIG_NAME
from generation.conditional.data import TrainingRecord
from generation.conditional.training import TrainingCallback
from generation.sd_finetune.config import TextualInversionConfig, caption, condition_token
from generation.sd_finetune.training import (
    DTYPES,
    Method,
    SDTrainingResult,
    cast_frozen,
    load_pipeline,
    sample_conditions,
    train_loop,
)
from validation.files import atomic_directory, atomic_write_text

FOLDER = "textual_inversion"
INDEX = "tokens.json"
WEIGHTS_NAME = "learned_embeds.safetensors"


def token_slug(token: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", token.lower()).strip("-")


def add_tokens(
    pipe: StableDiffusionPipeline, tokens: Sequence[str], initializer: str, noise: float, seed: int
) -> list[int]:
    """Add ``tokens`` to the tokenizer; start their rows at ``initializer`` plus noise; return ids."""
    existing = [t for t in tokens if t in pipe.tokenizer.get_vocab()]
    if existing:
        raise ValueError(f"tokens: {existing} are already in the tokenizer's vocabulary")
    start = pipe.tokenizer.encode(initializer, add_special_tokens=False)
    if len(start) != 1:
        raise ValueError(
            f"initializer_token: {initializer!r} is {len(start)} tokens for this tokenizer; "
            "choose a word that is one token"
        )
    added = pipe.tokenizer.add_tokens(list(tokens))
    if added != len(tokens):
        raise ValueError(f"tokens: only {added} of {len(tokens)} could be added")
    pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer))
    ids = pipe.tokenizer.convert_tokens_to_ids(list(tokens))
    weight = pipe.text_encoder.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        base = weight[start[0]].detach().float().cpu()
        for token_id in ids:
            fresh = base + noise * base.std() * torch.randn(base.shape, generator=generator)
            weight[token_id] = fresh.to(weight.device, weight.dtype)
    return list(ids)


def train_textual_inversion(
    config: TextualInversionConfig,
    records: Sequence[TrainingRecord],
    output_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    callbacks: TrainingCallback | None = None,
) -> SDTrainingResult:
    """Learn one token per condition of ``records`` and save them (see the module docstring).

    Resumes from the newest complete checkpoint in ``output_dir``.
    """
    if not isinstance(config, TextualInversionConfig):
        raise ValueError(f"config: expected a TextualInversionConfig, got {type(config).__name__}")
    output_dir = Path(output_dir)
    pipe = load_pipeline(config, device)
    pipe.unet.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    cast_frozen(pipe, DTYPES[config.mixed_precision], keep_text_encoder=True)

    conditions = sorted(
        {(int(r.fst), r.diagnosis) for r in records}
        & {(f, d) for f in config.fsts for d in config.diagnoses}
    )
    tokens = sorted({condition_token(config.token_scheme, f, d) for f, d in conditions})
    ids = add_tokens(pipe, tokens, config.initializer_token, config.init_noise, config.seed)
    embeddings = pipe.text_encoder.get_input_embeddings()
    embeddings.weight.requires_grad_(True)
    original = embeddings.weight.detach().clone()
    keep = torch.ones(len(pipe.tokenizer), dtype=torch.bool, device=original.device)
    keep[ids] = False
    token_of = {(f, d): condition_token(config.token_scheme, f, d) for f, d in conditions}
    pipe.text_encoder.train()

    def restore() -> None:
        with torch.no_grad():
            embeddings.weight[keep] = original[keep]

    def state() -> dict[str, torch.Tensor]:
        return {"learned_embeds": embeddings.weight[ids].detach()}

    def load_state(saved: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            embeddings.weight[ids] = saved["learned_embeds"].to(embeddings.weight.dtype)

    def caption_of(fst: int, diagnosis: str) -> str:
        return caption(config.caption_template, fst, diagnosis, token_of[(fst, diagnosis)])

    method = Method(
        parameters=[embeddings.weight],
        caption=lambda r: caption_of(int(r.fst), r.diagnosis),
        after_step=restore,
        state=state,
        load_state=load_state,
        weight_decay=0.0,
    )
    result = train_loop(
        config,
        pipe,
        method,
        records,
        output_dir,
        callbacks=callbacks,
        sample_prompts=[caption_of(f, d) for f, d in sample_conditions(conditions)],
    )
    if not result.stopped:
        result.output_path = save_learned_tokens(pipe, tokens, output_dir, config)
    return result


def save_learned_tokens(
    pipe: StableDiffusionPipeline,
    tokens: Sequence[str],
    output_dir: Path,
    config: TextualInversionConfig,
) -> Path:
    """Write ``textual_inversion/`` (one stock-loadable file per token) atomically; return it."""
    weight = pipe.text_encoder.get_input_embeddings().weight
    ids = pipe.tokenizer.convert_tokens_to_ids(list(tokens))
    target = output_dir / FOLDER
    with atomic_directory(target) as tmp:
        index = {}
        for token, token_id in zip(tokens, ids, strict=True):
            slug = token_slug(token)
            (tmp / slug).mkdir()
            save_file(
                {token: weight[token_id].detach().float().cpu().contiguous()},
                tmp / slug / WEIGHTS_NAME,
                metadata={"format": "pt", "fairderm_config": config.to_json()},
            )
            index[token] = f"{slug}/{WEIGHTS_NAME}"
        atomic_write_text(tmp / INDEX, json.dumps(index, indent=1, sort_keys=True))
        atomic_write_text(tmp / CONFIG_NAME, config.to_json())
    return target


def tokens_folder(folder: str | Path) -> Path:
    """The ``textual_inversion`` folder itself, given it or the output folder holding it."""
    folder = Path(folder)
    if (folder / FOLDER / INDEX).is_file():
        folder = folder / FOLDER
    if not (folder / INDEX).is_file():
        raise FileNotFoundError(f"folder: {folder} has no {INDEX} (not a textual-inversion output)")
    return folder


def learned_tokens(folder: str | Path) -> dict[str, Path]:
    """``{token: file}`` of a ``textual_inversion`` folder (or of the output folder holding one)."""
    folder = tokens_folder(folder)
    index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    return {token: folder / relative for token, relative in sorted(index.items())}


def tokens_config(folder: str | Path) -> TextualInversionConfig:
    """The config that trained the tokens of ``folder`` (their scheme and template)."""
    text = (tokens_folder(folder) / CONFIG_NAME).read_text(encoding="utf-8")
    return TextualInversionConfig.from_dict(json.loads(text))  # type: ignore[return-value]


def load_learned_tokens(pipe: StableDiffusionPipeline, folder: str | Path) -> list[str]:
    """Load every learned token of ``folder`` into ``pipe`` with diffusers' own loader."""
    files = learned_tokens(folder)
    pipe.load_textual_inversion([str(p) for p in files.values()], token=list(files))
    return list(files)

"""Configuration of Stable Diffusion fine-tuning: textual inversion and LoRA, per FST x diagnosis.

Both configs are validated on construction, round-trip through ``to_dict``/``from_dict`` (the
JSON saved beside every checkpoint and output, and copied into the run's database row), and
import no torch, so the web app can validate a launch form without loading the ML stack.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from dataclasses import dataclass
from typing import Any, ClassVar

from validation.checks import check_bool, check_float, check_int
from validation.vocabulary import FST, fst_group
from validation.vocabulary import diagnosis as lookup_diagnosis

#: The captions of Wang et al. (MICCAI 2024 ISIC workshop), with FairDerm's vocabulary.
DEFAULT_CAPTION = "dermoscopy image of {diagnosis} on Fitzpatrick type {fst} skin"
#: How conditions are turned into learned tokens.
TOKEN_SCHEMES: tuple[str, ...] = ("fst_diagnosis", "fst", "fst_group")
MIXED_PRECISION: tuple[str, ...] = ("no", "fp16", "bf16")
ADAPTER_LAYOUTS: tuple[str, ...] = ("shared", "per_fst")
CONDITION_EMBEDDINGS: tuple[str, ...] = ("none", "fst", "fst_diagnosis")
#: UNet attention projections of SD 1.x/2.x (diffusers names).
DEFAULT_UNET_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
DEFAULT_TEXT_TARGETS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj")
_PLACEHOLDERS = {"diagnosis", "fst", "token"}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")


def _check_fsts(name: str, values: object) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name}: must be a non-empty list of skin types, got {values!r}")
    for value in values:
        check_int(name, value, 1, 6)
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: {list(values)} repeats a skin type")


def _check_diagnoses(name: str, values: object) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name}: must be a non-empty list of diagnosis codes, got {values!r}")
    for value in values:
        try:
            lookup_diagnosis(value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: {list(values)} repeats a diagnosis")


def _check_template(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: must be a non-empty caption template, got {value!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(value) if f}
    except ValueError as error:
        raise ValueError(f"{name}: not a valid template ({error})") from None
    unknown = fields - _PLACEHOLDERS
    if unknown:
        raise ValueError(
            f"{name}: unknown placeholder(s) {sorted(unknown)}; use {sorted(_PLACEHOLDERS)}"
        )


def _check_modules(name: str, values: object) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name}: must be a non-empty list of module names, got {values!r}")
    for value in values:
        if not isinstance(value, str) or not _MODULE_NAME.match(value):
            raise ValueError(f"{name}: {value!r} is not a module name")


@dataclass(frozen=True)
class SDTrainingConfig:
    """What every Stable Diffusion fine-tuning run shares.

    Args:
        base_model (`str`): A diffusers SD 1.x/2.x folder or hub id
            (``runwayml/stable-diffusion-v1-5``, ...), loaded by
            ``generation.stable_diffusion.load_sd_pipeline``.
        fsts (`tuple[int, ...]`), diagnoses (`tuple[str, ...]`): The conditions trained.
        caption_template (`str`): Caption of each training image; placeholders ``{diagnosis}``
            (the diagnosis label, lower case), ``{fst}`` (Roman numeral) and ``{token}`` (the
            learned token of the image's condition, empty without one).
        resolution (`int`): Training side in pixels (512 for SD 1.x; images are resized and
            centre-cropped).
        train_steps, batch_size (`int`): Optimiser steps and images per step.
        learning_rate (`float`): AdamW learning rate.
        seed (`int`): Seeds the batch order, the noise, the timesteps and new weights.
        mixed_precision (`str`): ``"no"``, ``"fp16"`` or ``"bf16"``: the frozen base weights are
            cast to it; the trained parameters always stay in fp32 (so fp16 gradients are never
            unscaled, the error stock scripts hit).
        gradient_checkpointing (`bool`): Recompute activations in the backward pass.
        checkpoint_every, keep_checkpoints (`int`): Checkpoint cadence and how many to keep.
        sample_every (`int`): Validation samples every N steps (0: never), made with the
            training modules themselves (no second pipeline is loaded).
        validation_steps (`int`): Denoising steps of those samples.
    """

    base_model: str = "runwayml/stable-diffusion-v1-5"
    fsts: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    diagnoses: tuple[str, ...] = ("nevus", "melanoma")
    caption_template: str = DEFAULT_CAPTION
    resolution: int = 512
    train_steps: int = 1000
    batch_size: int = 4
    learning_rate: float = 1e-4
    seed: int = 0
    mixed_precision: str = "bf16"
    gradient_checkpointing: bool = False
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    sample_every: int = 0
    validation_steps: int = 20

    KIND: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if not isinstance(self.base_model, str) or not self.base_model.strip():
            raise ValueError(f"base_model: must be a folder or hub id, got {self.base_model!r}")
        _check_fsts("fsts", self.fsts)
        _check_diagnoses("diagnoses", self.diagnoses)
        _check_template("caption_template", self.caption_template)
        check_int("resolution", self.resolution, 8, 2048)
        if self.resolution % 8:
            raise ValueError(f"resolution: must be a multiple of 8, got {self.resolution}")
        check_int("train_steps", self.train_steps, 1, 10_000_000)
        check_int("batch_size", self.batch_size, 1, 4096)
        check_float("learning_rate", self.learning_rate, 1e-9, 10.0)
        check_int("seed", self.seed, 0, 2**63 - 1)
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        check_bool("gradient_checkpointing", self.gradient_checkpointing)
        check_int("checkpoint_every", self.checkpoint_every, 1, 10_000_000)
        check_int("keep_checkpoints", self.keep_checkpoints, 1, 1000)
        check_int("sample_every", self.sample_every, 0, 10_000_000)
        check_int("validation_steps", self.validation_steps, 1, 1000)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists), with ``kind``."""
        data: dict[str, Any] = {"kind": self.KIND}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SDTrainingConfig:
        """Rebuild from ``to_dict`` output (lists become tuples); unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"data: expected a dict, got {type(data).__name__}")
        values = dict(data)
        kind = values.pop("kind", cls.KIND)
        if kind != cls.KIND:
            raise ValueError(f"kind: {kind!r} is not {cls.KIND!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"data: unknown field(s) {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    #: Fields a resumed run may change.
    RESUMABLE_CHANGES: ClassVar[frozenset[str]] = frozenset(
        {"train_steps", "checkpoint_every", "keep_checkpoints", "sample_every", "validation_steps"}
    )


@dataclass(frozen=True)
class TextualInversionConfig(SDTrainingConfig):
    """Textual inversion: one new token per condition; only its embedding row trains.

    Args:
        token_scheme (`str`): ``"fst_diagnosis"`` (one token per FST x diagnosis cell, e.g.
            ``<fst5-melanoma>``), ``"fst"`` (``<fst5>``) or ``"fst_group"`` (``<fst-v-vi>``).
        initializer_token (`str`): Existing word whose embedding starts every new token.
        init_noise (`float`): Standard deviation of noise added to that start, so the tokens
            differ from each other (and from the word) from the first step.
    """

    caption_template: str = "dermoscopy image of {diagnosis} on {token} skin"
    learning_rate: float = 5e-4
    token_scheme: str = "fst_diagnosis"
    initializer_token: str = "skin"
    init_noise: float = 0.01

    KIND: ClassVar[str] = "train-textual-inversion"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("token_scheme", self.token_scheme, TOKEN_SCHEMES)
        if "{token}" not in self.caption_template:
            raise ValueError("caption_template: textual inversion needs a {token} placeholder")
        if not isinstance(self.initializer_token, str) or not self.initializer_token.strip():
            raise ValueError(f"initializer_token: must be a word, got {self.initializer_token!r}")
        check_float("init_noise", self.init_noise, 0.0, 1.0)


@dataclass(frozen=True)
class LoraTrainingConfig(SDTrainingConfig):
    """LoRA (peft) on the UNet's attention, optionally on the text encoder too.

    Args:
        rank, alpha (`int`), dropout (`float`): LoRA rank, scale numerator (scale = alpha / rank)
            and dropout.
        target_modules (`tuple[str, ...]`): UNet modules that get adapters.
        train_text_encoder (`bool`): Also put adapters on the text encoder
            (``text_target_modules``, same rank and alpha).
        textual_inversion (`str`): Optional output folder of a textual-inversion run: its
            tokens are loaded first and filled into ``{token}`` of the captions.
        adapters (`str`): ``"shared"``: one LoRA for all skin types, the FST named in the
            captions; ``"per_fst"``: one LoRA per skin type, each trained on that type's images
            and selected at generation.
        condition_embeddings (`str`): ``"none"``; ``"fst"``: a learned embedding per FST
            (``nn.Embedding`` over I-VI) appended as one extra token to the CLIP text states
            the UNet cross-attends to, trained jointly with the LoRA and saved with it;
            ``"fst_diagnosis"``: an FST token and a diagnosis token.
    """

    rank: int = 8
    alpha: int = 8
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_UNET_TARGETS
    train_text_encoder: bool = False
    text_target_modules: tuple[str, ...] = DEFAULT_TEXT_TARGETS
    textual_inversion: str = ""
    adapters: str = "shared"
    condition_embeddings: str = "none"

    KIND: ClassVar[str] = "train-lora"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("rank", self.rank, 1, 1024)
        check_int("alpha", self.alpha, 1, 4096)
        check_float("dropout", self.dropout, 0.0, 0.9)
        _check_modules("target_modules", self.target_modules)
        check_bool("train_text_encoder", self.train_text_encoder)
        _check_modules("text_target_modules", self.text_target_modules)
        if not isinstance(self.textual_inversion, str):
            raise ValueError(f"textual_inversion: must be a folder, got {self.textual_inversion!r}")
        _check_choice("adapters", self.adapters, ADAPTER_LAYOUTS)
        _check_choice("condition_embeddings", self.condition_embeddings, CONDITION_EMBEDDINGS)
        if "{token}" in self.caption_template and not self.textual_inversion:
            raise ValueError(
                "caption_template: uses {token} but no textual_inversion folder gives tokens"
            )


def condition_token(scheme: str, fst: int, diagnosis: str) -> str:
    """The learned token of a condition, e.g. ``<fst5-melanoma>``, ``<fst5>``, ``<fst-v-vi>``."""
    _check_choice("scheme", scheme, TOKEN_SCHEMES)
    check_int("fst", fst, 1, 6)
    if scheme == "fst_diagnosis":
        return f"<fst{fst}-{diagnosis.replace('_', '-')}>"
    if scheme == "fst":
        return f"<fst{fst}>"
    return f"<fst-{fst_group(fst).lower()}>"


def caption(template: str, fst: int, diagnosis: str, token: str = "") -> str:
    """The caption of one image: the template filled in, spaces normalised."""
    text = template.format(
        diagnosis=lookup_diagnosis(diagnosis).label.lower(), fst=FST(fst).roman, token=token
    )
    return " ".join(text.split())

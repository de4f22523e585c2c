"""Configuration of the FST × diagnosis conditional diffusion model.

One ``ConditionalDiffusionConfig`` describes a whole training run: the UNet, the label set, the
noise schedule, the optimiser, the checkpoint cadence, the default sampling parameters and the
FairSkin-style balancing (``BalancingConfig``). It is validated on construction and round-trips
exactly through ``to_dict``/``from_dict`` and ``to_json``/``from_json``, so the JSON stored with
every checkpoint and model (and copied into the web app's run record) rebuilds the same run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from validation.vocabulary import diagnosis as lookup_diagnosis

DEFAULT_DIAGNOSES: tuple[str, ...] = ("nevus", "melanoma", "bcc", "seborrheic_keratosis")
DEFAULT_FSTS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
PREDICTION_TYPES: tuple[str, ...] = ("v_prediction", "epsilon")
BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear", "squaredcos_cap_v2")
SAMPLERS: tuple[str, ...] = ("ddim", "dpmsolver++")
#: ``"no"``: fp32 throughout. ``"bf16"``: the UNet's forward pass under bf16 autocast over fp32
#: weights, optimiser state and loss (no loss scaling needed, unlike fp16).
MIXED_PRECISION: tuple[str, ...] = ("no", "bf16")


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name}: {value!r} is not {bounds}")


def _check_float(
    name: str, value: object, low: float, high: float | None = None, *, open_low: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not finite")
    too_low = value <= low if open_low else value < low
    if too_low or (high is not None and value > high):
        lower = f"> {low}" if open_low else f">= {low}"
        bounds = lower if high is None else f"{lower} and <= {high}"
        raise ValueError(f"{name}: {value!r} is not {bounds}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected true or false, got {value!r}")


def _check_fsts(name: str, values: object) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name}: expected a non-empty tuple of skin types, got {values!r}")
    for value in values:
        _check_int(name, value, 1, 6)
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: {values!r} repeats a skin type")


@dataclass
class BalancingConfig:
    """The three FairSkin-style balancing levels; the formulas are in ``balancing.py``.

    Args:
        resample (`bool`, defaults to `True`):
            Level (a): draw training samples with per-cell weights instead of uniformly.
        resample_power (`float`, defaults to `1.0`):
            Tempering ``tau`` of the inverse cell frequency: 1 draws every present FST ×
            diagnosis cell equally often, 0 keeps the data's own frequencies.
        dark_fst_factor (`float`, defaults to `5.0`):
            Extra sampling weight of the cells whose FST is in ``dark_fsts``.
        dark_fsts (`tuple[int, ...]`, defaults to `(5, 6)`):
            The skin types that ``dark_fst_factor`` oversamples.
        diversity (`bool`, defaults to `True`):
            Level (b): add the within-cell diversity hinge on the predicted clean images.
        diversity_weight (`float`, defaults to `0.05`):
            ``lambda``, the weight of the diversity term in the total loss.
        diversity_target_ratio (`float`, defaults to `1.0`):
            ``kappa``: predicted pairs should be at least ``kappa`` times as far apart as the
            real pairs they come from.
        diversity_max_timestep (`float`, defaults to `0.5`):
            Only samples noised to at most this fraction of the training timesteps take part
            (at higher noise the best x0-prediction is a blurry conditional mean, not a collapse).
        diversity_rarity_power (`float`, defaults to `1.0`):
            ``rho``: cell weight ``(mean count / cell count) ** rho`` toward rare cells.
        reweight (`bool`, defaults to `True`):
            Level (c): weight each sample's diffusion loss by its cell's adaptive weight.
        reweight_every (`int`, defaults to `50`):
            Recompute the cell weights every this many steps.
        reweight_momentum (`float`, defaults to `0.9`):
            Momentum ``m`` of the per-cell loss moving average.
        reweight_loss_power (`float`, defaults to `1.0`):
            ``gamma``: exponent on (cell loss average / mean of the cell averages).
        reweight_frequency_power (`float`, defaults to `0.0`):
            ``beta``: exponent on (mean count / cell count); 0 leaves frequency out.
        reweight_min (`float`, defaults to `0.25`), reweight_max (`float`, defaults to `4.0`):
            Clip of the normalised weights.
    """

    resample: bool = True
    resample_power: float = 1.0
    dark_fst_factor: float = 5.0
    dark_fsts: tuple[int, ...] = (5, 6)
    diversity: bool = True
    diversity_weight: float = 0.05
    diversity_target_ratio: float = 1.0
    diversity_max_timestep: float = 0.5
    diversity_rarity_power: float = 1.0
    reweight: bool = True
    reweight_every: int = 50
    reweight_momentum: float = 0.9
    reweight_loss_power: float = 1.0
    reweight_frequency_power: float = 0.0
    reweight_min: float = 0.25
    reweight_max: float = 4.0

    def __post_init__(self) -> None:
        for name in ("resample", "diversity", "reweight"):
            _check_bool(name, getattr(self, name))
        _check_float("resample_power", self.resample_power, 0.0, 4.0)
        _check_float("dark_fst_factor", self.dark_fst_factor, 0.0, 100.0, open_low=True)
        _check_fsts("dark_fsts", self.dark_fsts)
        _check_float("diversity_weight", self.diversity_weight, 0.0, 100.0)
        _check_float("diversity_target_ratio", self.diversity_target_ratio, 0.0, 10.0)
        _check_float("diversity_max_timestep", self.diversity_max_timestep, 0.0, 1.0, open_low=True)
        _check_float("diversity_rarity_power", self.diversity_rarity_power, 0.0, 4.0)
        _check_int("reweight_every", self.reweight_every, 1, 10_000_000)
        _check_float("reweight_momentum", self.reweight_momentum, 0.0, 0.9999)
        _check_float("reweight_loss_power", self.reweight_loss_power, 0.0, 4.0)
        _check_float("reweight_frequency_power", self.reweight_frequency_power, 0.0, 4.0)
        _check_float("reweight_min", self.reweight_min, 0.0, 1.0, open_low=True)
        _check_float("reweight_max", self.reweight_max, 1.0, 1000.0)


@dataclass
class ConditionalDiffusionConfig:
    """A training run of the class-conditional pixel-space diffusion model.

    Args:
        image_size (`int`, defaults to `32`):
            Side of the square training images, 16..256, divisible by ``2 ** (levels - 1)``.
        in_channels (`int`, defaults to `3`): RGB only.
        block_out_channels (`tuple[int, ...]`, defaults to `(32, 64, 128)`):
            Channels per UNet level; the number of entries is the number of levels.
        layers_per_block (`int`, defaults to `1`): ResNet layers per UNet block.
        attention_levels (`tuple[int, ...]` or `None`, defaults to `None`):
            Levels (0 = full resolution) whose blocks get self-attention; ``None`` means the
            lowest resolution only. The middle block always has attention.
        attention_head_dim (`int`, defaults to `8`): Channels per attention head.
        norm_num_groups (`int` or `None`, defaults to `None`):
            GroupNorm groups; ``None`` picks ``gcd(32, *block_out_channels)``.
        diagnoses (`tuple[str, ...]`): Shared diagnosis codes (``validation.vocabulary``).
        fsts (`tuple[int, ...]`, defaults to `(1, ..., 6)`): Fitzpatrick skin types.
        cond_drop_prob (`float`, defaults to `0.1`):
            Probability of replacing a label with the null label (classifier-free guidance).
        prediction_type (`str`, defaults to `"v_prediction"`): Or ``"epsilon"``.
        num_train_timesteps (`int`, defaults to `1000`), beta_schedule (`str`, defaults to `"linear"`):
            The DDPM noise schedule.
        train_steps (`int`), learning_rate (`float`), batch_size (`int`), weight_decay (`float`),
        max_grad_norm (`float`): AdamW optimisation with gradient-norm clipping.
        mixed_precision (`str`, defaults to `"no"`):
            ``"bf16"`` runs the UNet's forward pass under bf16 autocast (matrix products and
            convolutions on bf16 tensor cores); weights, optimiser state, EMA and the loss
            stay fp32, so checkpoints are the same either way. The GPU presets use it; on a
            CPU without bf16 units it is slower than ``"no"``.
        ema_decay (`float`, defaults to `0.999`): Maximum decay of the weight EMA.
        random_flip (`bool`), random_rotate90 (`bool`), both defaulting to `True`:
            Geometric augmentation (dermoscopy has no preferred orientation). There is
            deliberately no colour, hue or brightness augmentation: it would change skin tone,
            which is the very label the model is conditioned on.
        guidance_scale (`float`, defaults to `2.0`), num_inference_steps (`int`, defaults to `25`),
        sampler (`str`, defaults to `"ddim"`): Defaults for sampling (grids and generation).
        seed (`int`, defaults to `0`): Seeds weight init, batch draws, noise and sample grids.
        checkpoint_every (`int`, defaults to `200`), keep_checkpoints (`int`, defaults to `2`):
            Checkpoint cadence and how many complete checkpoints to keep.
        sample_every (`int`, defaults to `200`): Sample-grid cadence; 0 turns grids off.
        log_every (`int`, defaults to `10`): Window of the loss history means.
        balancing (`BalancingConfig`): The three balancing levels.
    """

    image_size: int = 32
    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    attention_levels: tuple[int, ...] | None = None
    attention_head_dim: int = 8
    norm_num_groups: int | None = None
    diagnoses: tuple[str, ...] = DEFAULT_DIAGNOSES
    fsts: tuple[int, ...] = DEFAULT_FSTS
    cond_drop_prob: float = 0.1
    prediction_type: str = "v_prediction"
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    train_steps: int = 1000
    learning_rate: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    ema_decay: float = 0.999
    random_flip: bool = True
    random_rotate90: bool = True
    guidance_scale: float = 2.0
    num_inference_steps: int = 25
    sampler: str = "ddim"
    seed: int = 0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    sample_every: int = 200
    log_every: int = 10
    balancing: BalancingConfig = field(default_factory=BalancingConfig)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # The 2.7 M-parameter model measured in shared/notes/offline-stack.md section 4.
        "cpu-demo-32px": {},
        "gpu-64px": {
            "image_size": 64,
            "block_out_channels": (64, 128, 256),
            "layers_per_block": 2,
            "attention_head_dim": 32,
            "train_steps": 30_000,
            "learning_rate": 2e-4,
            "batch_size": 64,
            "ema_decay": 0.9999,
            "num_inference_steps": 50,
            "mixed_precision": "bf16",
            "checkpoint_every": 2_000,
            "sample_every": 2_000,
        },
        "gpu-128px": {
            "image_size": 128,
            "block_out_channels": (64, 128, 256, 256),
            "layers_per_block": 2,
            "attention_head_dim": 32,
            "train_steps": 50_000,
            "learning_rate": 1e-4,
            "batch_size": 32,
            "ema_decay": 0.9999,
            "num_inference_steps": 50,
            "mixed_precision": "bf16",
            "checkpoint_every": 2_000,
            "sample_every": 2_000,
        },
        "gpu-256px": {
            "image_size": 256,
            "block_out_channels": (64, 128, 256, 256, 512),
            "layers_per_block": 2,
            "attention_head_dim": 32,
            "train_steps": 80_000,
            "learning_rate": 1e-4,
            "batch_size": 16,
            "ema_decay": 0.9999,
            "num_inference_steps": 50,
            "mixed_precision": "bf16",
            "checkpoint_every": 2_000,
            "sample_every": 4_000,
        },
    }

    def __post_init__(self) -> None:
        _check_int("in_channels", self.in_channels, 3, 3)
        if (
            not isinstance(self.block_out_channels, tuple)
            or not 2 <= len(self.block_out_channels) <= 6
        ):
            raise ValueError(
                f"block_out_channels: expected a tuple of 2-6 channel counts, got {self.block_out_channels!r}"
            )
        for channels in self.block_out_channels:
            _check_int("block_out_channels", channels, 4, 2048)
        levels = len(self.block_out_channels)
        _check_int("image_size", self.image_size, 16, 256)
        if self.image_size % 2 ** (levels - 1):
            raise ValueError(
                f"image_size: {self.image_size} is not divisible by 2 ** {levels - 1} "
                f"(one halving per UNet level)"
            )
        _check_int("layers_per_block", self.layers_per_block, 1, 8)
        if self.attention_levels is not None:
            if not isinstance(self.attention_levels, tuple):
                raise ValueError(
                    f"attention_levels: expected a tuple or None, got {self.attention_levels!r}"
                )
            for level in self.attention_levels:
                _check_int("attention_levels", level, 0, levels - 1)
            if len(set(self.attention_levels)) != len(self.attention_levels):
                raise ValueError(f"attention_levels: {self.attention_levels!r} repeats a level")
        _check_int("attention_head_dim", self.attention_head_dim, 1, 1024)
        if self.norm_num_groups is not None:
            _check_int("norm_num_groups", self.norm_num_groups, 1, 1024)
            if any(c % self.norm_num_groups for c in self.block_out_channels):
                raise ValueError(
                    f"norm_num_groups: {self.norm_num_groups} does not divide every entry of "
                    f"block_out_channels {self.block_out_channels}"
                )
        if not isinstance(self.diagnoses, tuple) or not self.diagnoses:
            raise ValueError(
                f"diagnoses: expected a non-empty tuple of codes, got {self.diagnoses!r}"
            )
        for code in self.diagnoses:
            if not isinstance(code, str):
                raise ValueError(f"diagnoses: {code!r} is not a code string")
            try:
                lookup_diagnosis(code)
            except ValueError as error:
                raise ValueError(f"diagnoses: {error}") from None
        if len(set(self.diagnoses)) != len(self.diagnoses):
            raise ValueError(f"diagnoses: {self.diagnoses!r} repeats a code")
        _check_fsts("fsts", self.fsts)
        _check_float("cond_drop_prob", self.cond_drop_prob, 0.0, 0.9)
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type: {self.prediction_type!r} is not one of {PREDICTION_TYPES}"
            )
        _check_int("num_train_timesteps", self.num_train_timesteps, 10, 10_000)
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule: {self.beta_schedule!r} is not one of {BETA_SCHEDULES}"
            )
        _check_int("train_steps", self.train_steps, 1, 10_000_000)
        _check_float("learning_rate", self.learning_rate, 0.0, 1.0, open_low=True)
        _check_int("batch_size", self.batch_size, 1, 4096)
        _check_float("weight_decay", self.weight_decay, 0.0, 1.0)
        _check_float("max_grad_norm", self.max_grad_norm, 0.0, open_low=True)
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"mixed_precision: {self.mixed_precision!r} is not one of {MIXED_PRECISION}"
            )
        _check_float("ema_decay", self.ema_decay, 0.0, 1.0)
        _check_bool("random_flip", self.random_flip)
        _check_bool("random_rotate90", self.random_rotate90)
        _check_float("guidance_scale", self.guidance_scale, 0.0, 50.0)
        _check_int("num_inference_steps", self.num_inference_steps, 1, self.num_train_timesteps)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: {self.sampler!r} is not one of {SAMPLERS}")
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("checkpoint_every", self.checkpoint_every, 1, 10_000_000)
        _check_int("keep_checkpoints", self.keep_checkpoints, 1, 1000)
        _check_int("sample_every", self.sample_every, 0, 10_000_000)
        _check_int("log_every", self.log_every, 1, 10_000_000)
        if not isinstance(self.balancing, BalancingConfig):
            raise ValueError(f"balancing: expected a BalancingConfig, got {self.balancing!r}")

    # ------------------------------------------------------------------ derived values
    @property
    def resolved_attention_levels(self) -> tuple[int, ...]:
        """The levels that get attention (``attention_levels`` with ``None`` resolved)."""
        if self.attention_levels is None:
            return (len(self.block_out_channels) - 1,)
        return tuple(sorted(self.attention_levels))

    @property
    def resolved_norm_num_groups(self) -> int:
        """GroupNorm groups (``norm_num_groups`` with ``None`` resolved)."""
        if self.norm_num_groups is not None:
            return self.norm_num_groups
        return math.gcd(32, *self.block_out_channels)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ConditionalDiffusionConfig:
        """Build a named preset (``"cpu-demo-32px"``, ``"gpu-64px"``, ``"gpu-128px"``, ``"gpu-256px"``).

        Args:
            name (`str`): A key of ``ConditionalDiffusionConfig.PRESETS``.
            overrides: Field values that replace the preset's.
        """
        if name not in cls.PRESETS:
            raise ValueError(f"name: unknown preset {name!r} (known: {', '.join(cls.PRESETS)})")
        return cls(**{**cls.PRESETS[name], **overrides})

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConditionalDiffusionConfig:
        """Rebuild a config from ``to_dict`` output; unknown keys raise ``ValueError``.

        Args:
            data (`dict`): Field values; ``balancing`` may be a dict or a ``BalancingConfig``.
        """
        if not isinstance(data, dict):
            raise ValueError(f"data: expected a dict, got {type(data).__name__}")
        values = _from_plain(cls, data, "")
        balancing = values.get("balancing", BalancingConfig())
        if isinstance(balancing, dict):
            values["balancing"] = BalancingConfig(
                **_from_plain(BalancingConfig, balancing, "balancing.")
            )
        return cls(**values)

    def to_json(self) -> str:
        """The config as indented, key-sorted JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ConditionalDiffusionConfig:
        """Parse ``to_json`` output.

        Args:
            text (`str`): The JSON document.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"text: not valid JSON ({error})") from None
        return cls.from_dict(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _from_plain(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Check keys against the dataclass fields and turn JSON lists back into tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]}: unknown config key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        values[key] = tuple(value) if isinstance(value, list) else value
    return values

"""ConditionalDiffusionConfig validation and JSON round trip; the label codec."""

from __future__ import annotations

import json
from typing import Any

import pytest

from generation.conditional import (
    BalancingConfig,
    ConditionalDiffusionConfig,
    LabelCodec,
    build_unet,
)


def test_defaults_are_the_measured_cpu_demo_model() -> None:
    config = ConditionalDiffusionConfig()
    assert config.prediction_type == "v_prediction"
    assert config.diagnoses == ("nevus", "melanoma", "bcc", "seborrheic_keratosis")
    assert config.fsts == (1, 2, 3, 4, 5, 6)
    assert config.cond_drop_prob == 0.1
    assert config.resolved_attention_levels == (2,)
    assert ConditionalDiffusionConfig.preset("cpu-demo-32px") == config


def test_cpu_demo_preset_builds_the_2_7_m_parameter_unet() -> None:
    config = ConditionalDiffusionConfig.preset("cpu-demo-32px")
    unet = build_unet(config)
    parameters = sum(p.numel() for p in unet.parameters())
    assert 2.5e6 < parameters < 2.9e6
    assert unet.config.num_class_embeds == 6 * 4 + 1
    assert unet.config.down_block_types == ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    assert unet.config.up_block_types == ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")


@pytest.mark.parametrize("name", sorted(ConditionalDiffusionConfig.PRESETS))
def test_presets_are_valid(name: str) -> None:
    config = ConditionalDiffusionConfig.preset(name, train_steps=7)
    assert config.train_steps == 7
    assert config.image_size % 2 ** (len(config.block_out_channels) - 1) == 0
    # GPUs train in bf16 autocast; the CPU demo stays fp32 (no bf16 units on most CPUs).
    assert config.mixed_precision == ("bf16" if name.startswith("gpu-") else "no")


def test_unknown_preset_is_rejected() -> None:
    with pytest.raises(ValueError, match="^name: unknown preset"):
        ConditionalDiffusionConfig.preset("gpu-1024px")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_size": 8}, "image_size"),
        ({"image_size": 512}, "image_size"),
        ({"image_size": 36, "block_out_channels": (32, 64, 128, 128)}, "image_size"),
        ({"image_size": 32.0}, "image_size"),
        ({"in_channels": 1}, "in_channels"),
        ({"block_out_channels": (32,)}, "block_out_channels"),
        ({"block_out_channels": [32, 64]}, "block_out_channels"),
        ({"attention_levels": (3,)}, "attention_levels"),
        ({"norm_num_groups": 5}, "norm_num_groups"),
        ({"diagnoses": ()}, "diagnoses"),
        ({"diagnoses": ("nevus", "wart")}, "diagnoses"),
        ({"diagnoses": ("nevus", "nevus")}, "diagnoses"),
        ({"fsts": (0, 1)}, "fsts"),
        ({"fsts": (1, 7)}, "fsts"),
        ({"cond_drop_prob": -0.1}, "cond_drop_prob"),
        ({"prediction_type": "sample"}, "prediction_type"),
        ({"beta_schedule": "cosine"}, "beta_schedule"),
        ({"train_steps": 0}, "train_steps"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": True}, "batch_size"),
        ({"ema_decay": 1.5}, "ema_decay"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"num_inference_steps": 2000}, "num_inference_steps"),
        ({"sampler": "euler"}, "sampler"),
        ({"mixed_precision": "fp16"}, "mixed_precision"),
        ({"seed": -1}, "seed"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"keep_checkpoints": 0}, "keep_checkpoints"),
        ({"sample_every": -1}, "sample_every"),
        ({"balancing": {"resample": True}}, "balancing"),
    ],
)
def test_invalid_values_raise_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        ConditionalDiffusionConfig(**overrides)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"resample": 1}, "resample"),
        ({"resample_power": -1.0}, "resample_power"),
        ({"dark_fst_factor": 0.0}, "dark_fst_factor"),
        ({"dark_fsts": (5, 9)}, "dark_fsts"),
        ({"diversity_weight": -0.1}, "diversity_weight"),
        ({"diversity_max_timestep": 0.0}, "diversity_max_timestep"),
        ({"reweight_every": 0}, "reweight_every"),
        ({"reweight_momentum": 1.0}, "reweight_momentum"),
        ({"reweight_min": 2.0}, "reweight_min"),
        ({"reweight_max": 0.5}, "reweight_max"),
    ],
)
def test_invalid_balancing_values_raise_naming_the_field(
    overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        BalancingConfig(**overrides)


def test_json_round_trip_is_exact() -> None:
    config = ConditionalDiffusionConfig(
        image_size=64,
        block_out_channels=(16, 32, 64),
        attention_levels=(1, 2),
        norm_num_groups=8,
        diagnoses=("bcc", "melanoma"),
        fsts=(1, 3, 5),
        prediction_type="epsilon",
        learning_rate=3.3e-4,
        guidance_scale=1.7,
        sampler="dpmsolver++",
        seed=2**40 + 3,
        balancing=BalancingConfig(resample_power=0.5, dark_fsts=(6,), reweight=False),
    )
    text = config.to_json()
    again = ConditionalDiffusionConfig.from_json(text)
    assert again == config
    assert again.to_json() == text
    assert isinstance(again.block_out_channels, tuple)
    assert isinstance(again.balancing.dark_fsts, tuple)
    assert ConditionalDiffusionConfig.from_dict(config.to_dict()) == config
    assert json.loads(text)["balancing"]["resample_power"] == 0.5


def test_unknown_keys_are_rejected_by_name() -> None:
    data = ConditionalDiffusionConfig().to_dict()
    with pytest.raises(ValueError, match="learning_rat.*unknown"):
        ConditionalDiffusionConfig.from_dict({**data, "learning_rat": 1e-3})
    data["balancing"]["oversample"] = 3
    with pytest.raises(ValueError, match="^balancing.oversample: unknown"):
        ConditionalDiffusionConfig.from_dict(data)
    with pytest.raises(ValueError, match="^text: not valid JSON"):
        ConditionalDiffusionConfig.from_json("{")


def test_label_codec_round_trip_and_null_index() -> None:
    codec = LabelCodec(fsts=(1, 2, 3, 4, 5, 6), diagnoses=("nevus", "melanoma", "bcc"))
    assert codec.num_cells == 18
    assert codec.null_index == 18
    assert codec.num_class_embeds == 19
    seen = set()
    for fst in codec.fsts:
        for code in codec.diagnoses:
            index = codec.encode(fst, code)
            assert codec.decode(index) == (fst, code)
            seen.add(index)
    assert seen == set(range(18))
    assert codec.decode(codec.null_index) is None
    assert codec.cell_fsts()[codec.encode(5, "bcc")] == 5
    assert codec.encode_many([6, 1], ["bcc", "nevus"]).tolist() == [17, 0]
    assert LabelCodec.from_dict(codec.to_dict()) == codec
    with pytest.raises(ValueError, match="^fst:"):
        codec.encode(7, "nevus")
    with pytest.raises(ValueError, match="^diagnosis:"):
        codec.encode(1, "scc")
    with pytest.raises(ValueError, match="^index:"):
        codec.decode(19)

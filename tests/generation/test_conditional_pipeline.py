"""ConditionalLesionPipeline: save/load round trip, seeding, conditioning, samplers, argument checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from generation.conditional import ConditionalLesionPipeline, build_unet, make_noise_scheduler
from tests.generation.test_conditional_toydata import tiny_config

# diffusers' DPM-Solver calls np.array on a torch tensor (numpy 2 deprecation, harmless).
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture(scope="module")
def pipeline() -> ConditionalLesionPipeline:
    """A random-init tiny model: its class embeddings differ, so labels change the output."""
    config = tiny_config(seed=7)
    pipe = ConditionalLesionPipeline(
        unet=build_unet(config).eval(),
        scheduler=make_noise_scheduler(config),
        fsts=list(config.fsts),
        diagnoses=list(config.diagnoses),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def _run(pipe: ConditionalLesionPipeline, **kwargs: Any) -> np.ndarray:
    values: dict[str, Any] = {"num_inference_steps": 3, "output_type": "np"}
    values.update(kwargs)
    return pipe(**values).images


def test_output_types_and_shapes(pipeline: ConditionalLesionPipeline) -> None:
    images = pipeline(
        [1, 6], ["nevus", "melanoma"], num_inference_steps=2, generator=_generators(0, 1)
    ).images
    assert len(images) == 2 and images[0].size == (16, 16) and images[0].mode == "RGB"
    array = _run(pipeline, fst=[3], diagnosis="nevus", generator=_generators(0))
    assert array.shape == (1, 16, 16, 3) and array.dtype == np.float32
    tensor = _run(pipeline, fst=3, diagnosis=["nevus", "melanoma"], output_type="pt")
    assert tensor.shape == (2, 3, 16, 16)
    assert pipeline(2, "nevus", num_inference_steps=1, return_dict=False)[0][0].size == (16, 16)


def test_same_seeds_give_same_pixels_and_noise_is_per_image(
    pipeline: ConditionalLesionPipeline,
) -> None:
    first = _run(pipeline, fst=[1, 5], diagnosis="nevus", generator=_generators(3, 4))
    again = _run(pipeline, fst=[1, 5], diagnosis="nevus", generator=_generators(3, 4))
    assert np.array_equal(first, again)
    other = _run(pipeline, fst=[1, 5], diagnosis="nevus", generator=_generators(3, 9))
    assert np.abs(other[0] - first[0]).max() < 1e-5
    assert np.abs(other[1] - first[1]).max() > 0.01
    # An image depends on its own seed, not on its place or neighbours in the batch.
    alone = _run(pipeline, fst=[5], diagnosis="nevus", generator=_generators(4))
    assert np.abs(alone[0] - first[1]).max() < 1e-5


def test_the_label_changes_the_output(pipeline: ConditionalLesionPipeline) -> None:
    images = _run(
        pipeline,
        fst=[1, 6, 1],
        diagnosis=["nevus", "nevus", "melanoma"],
        generator=_generators(0, 0, 0),
    )
    assert np.abs(images[0] - images[1]).mean() > 1e-3  # FST I vs VI, same noise
    assert np.abs(images[0] - images[2]).mean() > 1e-3  # nevus vs melanoma, same noise
    conditional = _run(
        pipeline, fst=[1], diagnosis="nevus", generator=_generators(0), guidance_scale=1.0
    )
    guided = _run(
        pipeline, fst=[1], diagnosis="nevus", generator=_generators(0), guidance_scale=4.0
    )
    assert np.abs(conditional - guided).mean() > 1e-3


def test_dpm_solver_output_stays_in_range_for_an_untrained_model(
    pipeline: ConditionalLesionPipeline,
) -> None:
    images = _run(
        pipeline,
        fst=[1, 6],
        diagnosis="melanoma",
        sampler="dpmsolver++",
        generator=_generators(0, 1),
        num_inference_steps=8,
        guidance_scale=5.0,
    )
    assert images.min() >= 0.0 and images.max() <= 1.0
    pil = pipeline(
        [1], "melanoma", sampler="dpmsolver++", num_inference_steps=8, generator=_generators(0)
    ).images[0]
    pixels = np.asarray(pil)
    assert pixels.dtype == np.uint8 and pixels.min() >= 0 and pixels.max() <= 255
    ddim = _run(
        pipeline,
        fst=[1, 6],
        diagnosis="melanoma",
        generator=_generators(0, 1),
        num_inference_steps=8,
        guidance_scale=5.0,
    )
    assert not np.array_equal(images, ddim)


def test_save_and_load_round_trip(pipeline: ConditionalLesionPipeline, tmp_path: Path) -> None:
    pipeline.save_pretrained(tmp_path / "model")
    loaded = ConditionalLesionPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert list(loaded.config.fsts) == [1, 2, 3, 4, 5, 6]
    assert list(loaded.config.diagnoses) == ["nevus", "melanoma"]
    assert loaded.codec == pipeline.codec
    assert isinstance(loaded.scheduler, DDPMScheduler)
    assert loaded.scheduler.config.prediction_type == "v_prediction"
    for sampler in ("ddim", "dpmsolver++"):
        before = _run(
            pipeline, fst=[2, 4], diagnosis="melanoma", sampler=sampler, generator=_generators(5, 6)
        )
        after = _run(
            loaded, fst=[2, 4], diagnosis="melanoma", sampler=sampler, generator=_generators(5, 6)
        )
        assert np.array_equal(before, after)


def test_custom_label_sets_round_trip(tmp_path: Path) -> None:
    config = tiny_config(fsts=(5, 6), diagnoses=("bcc", "melanoma", "nevus"))
    pipe = ConditionalLesionPipeline(
        build_unet(config),
        make_noise_scheduler(config),
        fsts=[5, 6],
        diagnoses=["bcc", "melanoma", "nevus"],
    )
    pipe.save_pretrained(tmp_path / "model")
    loaded = ConditionalLesionPipeline.from_pretrained(tmp_path / "model")
    assert loaded.codec.fsts == (5, 6) and loaded.codec.diagnoses == ("bcc", "melanoma", "nevus")
    assert loaded.unet.config.num_class_embeds == 7


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"fst": [1, 2], "diagnosis": ["nevus"]}, "fst"),
        ({"fst": [], "diagnosis": "nevus"}, "fst"),
        ({"fst": [7], "diagnosis": "nevus"}, "fst"),
        ({"fst": ["I"], "diagnosis": "nevus"}, "fst"),
        ({"fst": [1], "diagnosis": "scc"}, "diagnosis"),
        ({"fst": [1], "diagnosis": [3]}, "diagnosis"),
        ({"fst": [1], "diagnosis": "nevus", "guidance_scale": -1.0}, "guidance_scale"),
        ({"fst": [1], "diagnosis": "nevus", "num_inference_steps": 0}, "num_inference_steps"),
        ({"fst": [1], "diagnosis": "nevus", "sampler": "euler"}, "sampler"),
        ({"fst": [1], "diagnosis": "nevus", "output_type": "latent"}, "output_type"),
        ({"fst": [1, 2], "diagnosis": "nevus", "generator": [torch.Generator()]}, "generator"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(
    pipeline: ConditionalLesionPipeline, kwargs: dict[str, Any], argument: str
) -> None:
    with pytest.raises(ValueError, match=f"^{argument}: "):
        pipeline(**kwargs)


def test_unet_and_labels_must_agree() -> None:
    config = tiny_config()
    with pytest.raises(ValueError, match="^unet: "):
        ConditionalLesionPipeline(
            build_unet(config), make_noise_scheduler(config), diagnoses=["nevus"]
        )

"""Lesion preservation: SSIM over the source's lesion and the overlap of the lesion masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from validation.lesion import lesion_mask, lesion_preservation, ssim_map


def lesion_image(
    skin: tuple[int, int, int], centre: tuple[int, int] = (32, 32), r: int = 12
) -> Image.Image:
    image = Image.new("RGB", (64, 64), skin)
    draw = ImageDraw.Draw(image)
    x, y = centre
    draw.ellipse((x - r, y - r, x + r, y + r), fill=(60, 35, 25))
    draw.ellipse((x - r // 3, y - r // 3, x + r // 3, y + r // 3), fill=(25, 15, 10))
    return image


def test_an_unchanged_lesion_scores_one() -> None:
    source = lesion_image((220, 180, 160))
    result = lesion_preservation(source, source.copy())
    assert result.found and result.ssim == pytest.approx(1.0) and result.mask_iou == 1.0
    assert 0.05 < result.lesion_share < 0.3


def test_new_skin_around_the_same_lesion_keeps_it_better_than_a_moved_lesion() -> None:
    source = lesion_image((220, 180, 160))
    darker_skin = lesion_image((150, 105, 80))
    moved = lesion_image((150, 105, 80), centre=(44, 40))
    blurred = darker_skin.filter(ImageFilter.GaussianBlur(3))
    kept = lesion_preservation(source, darker_skin)
    assert kept.mask_iou > 0.9
    lost = lesion_preservation(source, moved)
    soft = lesion_preservation(source, blurred)
    assert kept.ssim > soft.ssim > lost.ssim
    assert lost.mask_iou < 0.5


def test_no_lesion_gives_no_figures_and_bad_input_is_named() -> None:
    flat = Image.new("RGB", (32, 32), (200, 160, 140))
    assert not lesion_mask(np.full((32, 32), 60.0)).any()
    result = lesion_preservation(flat, flat)
    assert not result.found and result.ssim is None and result.mask_iou is None
    with pytest.raises(ValueError, match="^image: expected an RGB array"):
        lesion_preservation(np.zeros((8, 8)), flat)


def test_ssim_map_matches_the_closed_form_for_a_constant_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(20, 80, (32, 32))
    assert np.allclose(ssim_map(a, a), 1.0)
    assert ssim_map(a, 100 - a).mean() < 0  # inverted structure

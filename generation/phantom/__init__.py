"""Procedural phantom dermoscopy: FairDerm's embedded, deterministic dataset with ground truth.

No real dermatology dataset ships with FairDerm, so this package draws dermoscopy-like
images whose ground truth is known exactly: Fitzpatrick skin type and skin colour (CIELAB and
ITA), diagnosis and malignancy, the ABCD properties (axes of asymmetry, irregular border
segments, dermoscopic colours, diameter in mm), dermoscopic structures, hair, lesion and
patient identities (for leakage-free splits), and per-pixel lesion / skin / hair masks.

Typical use::

    from generation.phantom import PhantomConfig, build_phantom_dataset

    summary = build_phantom_dataset(PhantomConfig(count=500, image_size=64, seed=0), "var/phantom")

or ``python -m generation.phantom --out var/phantom --count 500``.

Lesion contrast falls on darker skin (``contrast_factor``: ``1 - 0.11 * (FST - 1)``, 1.0 at
FST I to 0.45 at FST VI), so models trained on light-skin-heavy data do worse on dark skin,
as they do on real data.
"""

from generation.phantom.allocation import largest_remainder, stable_allocation
from generation.phantom.config import (
    DEFAULT_DIAGNOSIS_MIX,
    DEFAULT_FST_MIX,
    PHANTOM_VERSION,
    SUPPORTED_DIAGNOSES,
    PhantomConfig,
)
from generation.phantom.dataset import (
    METADATA_COLUMNS,
    PhantomSummary,
    build_phantom_dataset,
    metadata_row,
    read_phantom_metadata,
)
from generation.phantom.lesion import PALETTE
from generation.phantom.render import PhantomRender, render_phantom
from generation.phantom.spec import (
    COLOURS,
    STRUCTURES,
    PhantomSpec,
    contrast_factor,
    plan_phantom,
    reskin,
    sample_skin_lab,
)

__all__ = [
    "COLOURS",
    "DEFAULT_DIAGNOSIS_MIX",
    "DEFAULT_FST_MIX",
    "METADATA_COLUMNS",
    "PALETTE",
    "PHANTOM_VERSION",
    "STRUCTURES",
    "SUPPORTED_DIAGNOSES",
    "PhantomConfig",
    "PhantomRender",
    "PhantomSpec",
    "PhantomSummary",
    "build_phantom_dataset",
    "contrast_factor",
    "largest_remainder",
    "metadata_row",
    "plan_phantom",
    "read_phantom_metadata",
    "render_phantom",
    "reskin",
    "sample_skin_lab",
    "stable_allocation",
]

"""Quality metrics of synthetic sets: FID, KID, IS, LPIPS, tone fidelity, memorization.

Backbones come from their own packages (pytorch-fid, lpips) and load only from the torch
hub cache; every result records whether its weights are the official ones
(``validation.metrics.weights``). ``evaluate`` is the entry point; ``python -m validation
metrics`` its command line.

Importing this package does not import torch (the web process reads ``MetricsConfig``);
``evaluate`` and friends are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from validation.metrics.config import METRICS, MetricsConfig
from validation.metrics.images import ImageItem, folder_items
from validation.metrics.weights import MissingWeightsError

_LAZY = {
    "DEFINITIONS": "validation.metrics.suite",
    "TARGETS": "validation.metrics.suite",
    "evaluate": "validation.metrics.suite",
    "write_pair_images": "validation.metrics.report",
}

__all__ = [
    "DEFINITIONS",
    "METRICS",
    "TARGETS",
    "ImageItem",
    "MetricsConfig",
    "MissingWeightsError",
    "evaluate",
    "folder_items",
    "write_pair_images",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'validation.metrics' has no attribute {name!r}")

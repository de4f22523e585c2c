"""Quality metrics of synthetic sets: FID, KID, IS, LPIPS, tone fidelity, memorization.

Backbones come from their own packages (pytorch-fid, lpips) and load only from the torch
hub cache; every result records whether its weights are the official ones
(``validation.metrics.weights``). ``evaluate`` is the entry point; ``python -m validation
metrics`` its command line.
"""

from validation.metrics.config import METRICS, MetricsConfig
from validation.metrics.evaluate import DEFINITIONS, TARGETS, evaluate, write_pair_images
from validation.metrics.images import ImageItem, folder_items
from validation.metrics.weights import MissingWeightsError

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

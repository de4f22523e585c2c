"""Classifier networks: a small CNN for the CPU, torchvision models for the GPU.

ImageNet weights are used only when they are already on disk (``$TORCH_HOME/hub/checkpoints``
under torchvision's own file name): nothing is downloaded. The file name carries the first
hex digits of the official file's sha256; a file whose hash does not match is a stand-in
(e.g. random weights staged for offline tests) and is recorded as such, so results computed
with it never count as meeting a literature target.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from validation.downstream.config import ClassifierConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsInfo:
    """Where a classifier's initial weights came from.

    ``source`` is ``imagenet`` (official file, hash checked), ``stand-in`` (a file under the
    official name whose hash does not match) or ``random-init``.
    """

    source: str
    file: str = ""

    @property
    def official(self) -> bool:
        return self.source == "imagenet"

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "file": self.file}


class SmallCNN(nn.Module):
    """Three conv blocks and a linear head: trains in seconds at 16-64 px on the CPU."""

    def __init__(self, num_outputs: int, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for multiplier in (1, 2, 4):
            layers += [
                nn.Conv2d(channels, width * multiplier, 3, padding=1, bias=False),
                nn.BatchNorm2d(width * multiplier),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = width * multiplier
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def weights_file(architecture: str) -> Path | None:
    """The cache path torchvision would load ``architecture``'s ImageNet weights from."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(architecture).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _sha256_prefix_matches(path: Path) -> bool:
    stem = path.name.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1].lower()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(prefix)


def build_classifier(config: ClassifierConfig, num_outputs: int) -> tuple[nn.Module, WeightsInfo]:
    """The network for ``config`` with ``num_outputs`` logits, and where its weights came from."""
    if config.architecture == "small_cnn":
        return SmallCNN(num_outputs, config.width), WeightsInfo("random-init")
    from torchvision.models import get_model, get_model_weights

    info = WeightsInfo("random-init")
    weights = None
    if config.pretrained:
        path = weights_file(config.architecture)
        if path is not None and path.is_file():
            weights = get_model_weights(config.architecture).DEFAULT
            source = "imagenet" if _sha256_prefix_matches(path) else "stand-in"
            info = WeightsInfo(source, path.name)
    model = get_model(config.architecture, weights=weights)
    if config.architecture.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_outputs)
    else:  # efficientnet: classifier = Sequential(Dropout, Linear)
        last = model.classifier[-1]
        model.classifier[-1] = nn.Linear(last.in_features, num_outputs)
    return model, info


def normalisation(config: ClassifierConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if config.architecture == "small_cnn":
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    return IMAGENET_MEAN, IMAGENET_STD

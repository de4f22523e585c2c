"""Config dataclasses of a downstream experiment: the classifier and the experiment's arms.

Both validate in ``__post_init__`` (``ValueError`` starting with the field's name), round-trip
through ``to_dict``/``from_dict`` and are saved as JSON beside the outputs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from validation.checks import check_float, check_int

ARCHITECTURES = ("small_cnn", "resnet18", "resnet50", "efficientnet_b0")
TASKS = ("binary", "diagnosis")

#: The arms an experiment can run. ``baseline`` (real images only) is always run: every
#: result is an ablation with and without synthetic images.
STRATEGIES = ("baseline", "traditional_aug", "mixed", "pretrain_finetune", "weighted")
SYNTHETIC_STRATEGIES = ("mixed", "pretrain_finetune", "weighted")


def _known_fields(cls: type, data: dict[str, Any]) -> None:
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (known: {', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class ClassifierConfig:
    """One classifier's training recipe.

    Args:
        architecture: ``small_cnn`` (3 conv blocks, for 16-64 px on the CPU) or a torchvision
            model (``resnet18``, ``resnet50``, ``efficientnet_b0``; 224 px on a GPU).
        image_size: Square input size in pixels.
        task: ``binary`` (malignant vs benign) or ``diagnosis`` (multi-class; the malignant
            score is the summed probability of the malignant diagnoses).
        pretrained: Use ImageNet weights when they are in ``$TORCH_HOME/hub/checkpoints``;
            otherwise (and always for ``small_cnn``) random init. Which one was used is
            recorded with the results.
        epochs: Training epochs; the epoch with the best validation AUROC is kept.
    """

    architecture: str = "small_cnn"
    image_size: int = 32
    task: str = "binary"
    pretrained: bool = True
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    width: int = 16

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture: must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if self.task not in TASKS:
            raise ValueError(f"task: must be one of {', '.join(TASKS)}, got {self.task!r}")
        if not isinstance(self.pretrained, bool):
            raise ValueError(f"pretrained: must be true or false, got {self.pretrained!r}")
        check_int("image_size", self.image_size, 16, 512)
        check_int("epochs", self.epochs, 1, 1000)
        check_int("batch_size", self.batch_size, 1, 4096)
        check_int("width", self.width, 4, 256)
        check_float("learning_rate", self.learning_rate, 1e-7, 1.0)
        check_float("weight_decay", self.weight_decay, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        if not isinstance(data, dict):
            raise ValueError(f"classifier: must be an object, got {data!r}")
        _known_fields(cls, data)
        return cls(**data)


@dataclass(frozen=True)
class Arm:
    """One trained condition: a strategy and, for synthetic strategies, a synthetic:real ratio."""

    strategy: str
    ratio: float = 0.0

    @property
    def name(self) -> str:
        return self.strategy if self.ratio == 0 else f"{self.strategy}@{self.ratio:g}"

    @property
    def uses_synthetic(self) -> bool:
        return self.strategy in SYNTHETIC_STRATEGIES


@dataclass(frozen=True)
class ExperimentConfig:
    """Which arms to train, on how many seeds, and how to evaluate them.

    Args:
        strategies: Arms to run; ``baseline`` must be among them. ``mixed`` trains on real
            plus synthetic images; ``pretrain_finetune`` pre-trains on synthetic images and
            fine-tunes on real ones; ``weighted`` mixes them with real samples weighted
            ``real_weight`` times a synthetic one in the loss; ``traditional_aug`` is real
            images with RandAugment and colour jitter, no synthetic image.
        ratios: Synthetic:real ratios of the ``mixed`` sweep (synthetic images drawn =
            ratio x real training images, capped by the synthetic pool; the achieved ratio
            is recorded).
        main_ratio: The ratio of ``pretrain_finetune``, ``weighted`` and of the primary arm.
        primary: The augmented arm the go/no-go inputs compare with the baseline
            (``mixed``, ``pretrain_finetune`` or ``weighted``, at ``main_ratio``).
        seeds: Training seeds; every arm is trained once per seed.
        target_sensitivity: The fixed operating point: the threshold is set on the
            validation split so that sensitivity reaches this value, then applied unchanged
            to the locked test set.
        bootstrap: Bootstrap resamples for the confidence intervals.
    """

    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    strategies: tuple[str, ...] = STRATEGIES
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
    main_ratio: float = 1.0
    primary: str = "mixed"
    seeds: tuple[int, ...] = (0, 1, 2)
    real_weight: float = 3.0
    pretrain_epochs: int = 4
    target_sensitivity: float = 0.8
    bootstrap: int = 1000
    confidence: float = 0.95
    calibration_bins: int = 10
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.classifier, ClassifierConfig):
            raise ValueError(f"classifier: must be a ClassifierConfig, got {self.classifier!r}")
        object.__setattr__(self, "strategies", tuple(self.strategies))
        object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(
                f"strategies: unknown strategy {unknown[0]!r} (known: {', '.join(STRATEGIES)})"
            )
        if "baseline" not in self.strategies:
            raise ValueError("strategies: must include 'baseline' (the without-synthetic ablation)")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError(f"strategies: listed twice in {list(self.strategies)}")
        if not self.seeds:
            raise ValueError("seeds: at least one seed is needed")
        for seed in self.seeds:
            check_int("seeds", seed, 0, 2**31 - 1)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: listed twice in {list(self.seeds)}")
        for ratio in self.ratios:
            check_float("ratios", ratio, 0.01, 1000.0)
        check_float("main_ratio", self.main_ratio, 0.01, 1000.0)
        if self.primary not in SYNTHETIC_STRATEGIES:
            raise ValueError(
                f"primary: must be one of {', '.join(SYNTHETIC_STRATEGIES)}, got {self.primary!r}"
            )
        if self.primary not in self.strategies:
            raise ValueError(f"primary: {self.primary!r} is not among the strategies")
        check_float("real_weight", self.real_weight, 1e-3, 1e3)
        check_int("pretrain_epochs", self.pretrain_epochs, 1, 1000)
        check_float("target_sensitivity", self.target_sensitivity, 0.01, 0.99)
        check_int("bootstrap", self.bootstrap, 10, 100_000)
        check_float("confidence", self.confidence, 0.5, 0.999)
        check_int("calibration_bins", self.calibration_bins, 2, 100)
        check_int("bootstrap_seed", self.bootstrap_seed, 0, 2**31 - 1)

    @property
    def arms(self) -> list[Arm]:
        """Every arm in training order: baseline first, then the ratio sweep."""
        arms: list[Arm] = []
        for strategy in self.strategies:
            if strategy == "mixed":
                ratios = sorted(set(self.ratios) | {self.main_ratio})
                arms.extend(Arm(strategy, r) for r in ratios)
            elif strategy in SYNTHETIC_STRATEGIES:
                arms.append(Arm(strategy, self.main_ratio))
            else:
                arms.append(Arm(strategy))
        return sorted(arms, key=lambda arm: arm.strategy != "baseline")

    @property
    def primary_arm(self) -> Arm:
        return Arm(self.primary, self.main_ratio)

    @property
    def uses_synthetic(self) -> bool:
        return any(arm.uses_synthetic for arm in self.arms)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["strategies"] = list(self.strategies)
        data["ratios"] = list(self.ratios)
        data["seeds"] = list(self.seeds)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        if not isinstance(data, dict):
            raise ValueError(f"config: must be an object, got {data!r}")
        _known_fields(cls, data)
        values = dict(data)
        if "classifier" in values:
            values["classifier"] = ClassifierConfig.from_dict(values["classifier"])
        for name in ("strategies", "ratios", "seeds"):
            if name in values and not isinstance(values[name], list | tuple):
                raise ValueError(f"{name}: must be a list, got {values[name]!r}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        return cls.from_dict(json.loads(text))

    PRESETS = ("cpu-demo-32px", "cpu-quick-16px", "gpu-resnet18-224px", "gpu-efficientnet-224px")

    @classmethod
    def preset(cls, name: str) -> ExperimentConfig:
        if name == "cpu-demo-32px":
            return cls(classifier=ClassifierConfig(image_size=32, epochs=8))
        if name == "cpu-quick-16px":
            return cls(
                classifier=ClassifierConfig(image_size=16, epochs=2, width=8),
                strategies=("baseline", "mixed"),
                ratios=(1.0,),
                bootstrap=200,
            )
        if name == "gpu-resnet18-224px":
            return cls(
                classifier=ClassifierConfig(
                    architecture="resnet18", image_size=224, epochs=20, learning_rate=3e-4
                ),
                pretrain_epochs=5,
            )
        if name == "gpu-efficientnet-224px":
            return cls(
                classifier=ClassifierConfig(
                    architecture="efficientnet_b0", image_size=224, epochs=20, learning_rate=3e-4
                ),
                pretrain_epochs=5,
            )
        raise ValueError(f"preset: unknown preset {name!r} (known: {', '.join(cls.PRESETS)})")

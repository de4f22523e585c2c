"""Downstream configs, data hygiene, the locked-test guard and a small end-to-end experiment."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from validation.downstream import experiment as experiment_module
from validation.downstream.config import ClassifierConfig, ExperimentConfig
from validation.downstream.data import (
    ImageCache,
    LockedTestSet,
    LockedTestSetError,
    Sample,
    check_hygiene,
)
from validation.downstream.experiment import arm_data, run_experiment
from validation.downstream.models import build_classifier, weights_file
from validation.downstream.train import train_classifier

TINY = ClassifierConfig(image_size=16, epochs=2, batch_size=16, width=4)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def make_samples(
    folder: Path,
    n: int,
    *,
    split: str = "train",
    origin: str = "real",
    source: str = "d",
    seed: int = 0,
    fsts: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
) -> list[Sample]:
    """Phantom-like 16 px images: skin darkens with FST; malignant lesions are darker blobs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        fst = fsts[i % len(fsts)]
        malignant = bool((i // len(fsts)) % 3 == 0)  # every type gets malignant images
        skin = 230 - 30 * fst
        pixels = np.full((16, 16, 3), skin, dtype=float) + rng.normal(0, 6, (16, 16, 3))
        depth = 0.45 if malignant else 0.9
        pixels[5:11, 5:11] *= depth
        path = folder / f"{source}-{i}.png"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path)
        samples.append(
            Sample(
                key=f"{source}/{i}",
                path=path,
                diagnosis="melanoma" if malignant else "nevus",
                malignant=malignant,
                fst=fst,
                origin=origin,
                split=split,
                source=source,
                lesion_id=f"L{i}",
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            )
        )
    return samples


# --- Configs --------------------------------------------------------------------------------


def test_experiment_config_round_trips_and_lists_its_arms() -> None:
    config = ExperimentConfig(ratios=(0.5, 2.0), seeds=(0, 1, 2))
    assert ExperimentConfig.from_json(config.to_json()) == config
    names = [arm.name for arm in config.arms]
    assert names[0] == "baseline"
    assert names == [
        "baseline",
        "traditional_aug",
        "mixed@0.5",
        "mixed@1",
        "mixed@2",
        "pretrain_finetune@1",
        "weighted@1",
    ]
    assert config.primary_arm.name == "mixed@1"
    for name in ExperimentConfig.PRESETS:
        assert ExperimentConfig.preset(name).to_dict()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"strategies": ["mixed"], "primary": "mixed"}, "strategies"),
        ({"strategies": ["baseline", "magic"]}, "strategies"),
        ({"seeds": []}, "seeds"),
        ({"ratios": [0]}, "ratios"),
        ({"primary": "baseline"}, "primary"),
        ({"bootstrap": 1}, "bootstrap"),
        ({"classifier": {"architecture": "vit"}}, "architecture"),
        ({"classifier": {"image_size": 8}}, "image_size"),
        ({"classifier": {"task": "segmentation"}}, "task"),
        ({"learning_rate": 1}, "learning_rate"),
    ],
)
def test_bad_configs_name_the_field(data: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        ExperimentConfig.from_dict(data)


# --- Hygiene and the locked test set ----------------------------------------------------------


def test_training_refuses_the_locked_test_set(tmp_path: Path) -> None:
    train = make_samples(tmp_path / "train", 12)
    val = make_samples(tmp_path / "val", 6, split="val", source="v")
    test = make_samples(tmp_path / "test", 6, split="external-test", source="t")
    locked = LockedTestSet("ddi-test", lambda: test)
    cache = ImageCache(16)
    with pytest.raises(LockedTestSetError, match="val"):
        train_classifier(TINY, train, locked, seed=0, cache=cache, classes=("melanoma", "nevus"))  # type: ignore[arg-type]
    opened = locked.open_for_final_evaluation()
    assert all(s.locked for s in opened)
    for name, kwargs in (
        ("train", {"train": opened, "val": val}),
        ("val", {"train": train, "val": opened}),
        ("pretrain", {"train": train, "val": val, "pretrain": opened}),
    ):
        with pytest.raises(LockedTestSetError, match=name):
            train_classifier(TINY, seed=0, cache=cache, classes=("melanoma", "nevus"), **kwargs)


def test_the_locked_set_is_opened_only_after_every_model_is_selected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = make_samples(tmp_path / "train", 18)
    val = make_samples(tmp_path / "val", 9, split="val", source="v")
    synthetic = make_samples(tmp_path / "syn", 12, origin="synthetic", source="s")
    test = make_samples(tmp_path / "test", 12, split="external-test", source="t")
    trainings: list[str] = []
    real_train = experiment_module.train_classifier

    def counting(*args, **kwargs):
        trainings.append("trained")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(experiment_module, "train_classifier", counting)
    opened_after: list[int] = []

    def loader() -> list[Sample]:
        opened_after.append(len(trainings))
        return test

    config = ExperimentConfig(
        classifier=ClassifierConfig(image_size=16, epochs=1, batch_size=16, width=4),
        strategies=("baseline", "mixed"),
        ratios=(1.0,),
        seeds=(0, 1),
        bootstrap=20,
    )
    run_experiment(
        config, train=train, val=val, synthetic=synthetic, test_set=LockedTestSet("t", loader)
    )
    assert opened_after == [4]  # 2 arms x 2 seeds, all trained before the first read


def test_the_experiment_wants_a_locked_test_set(tmp_path: Path) -> None:
    train = make_samples(tmp_path / "train", 6)
    with pytest.raises(ValueError, match="test_set"):
        run_experiment(ExperimentConfig(), train=train, val=train, synthetic=[], test_set=train)  # type: ignore[arg-type]


def test_hygiene_rules(tmp_path: Path) -> None:
    train = make_samples(tmp_path / "train", 6)
    val = make_samples(tmp_path / "val", 3, split="val", source="v")
    synthetic = make_samples(tmp_path / "syn", 3, origin="synthetic", source="s")
    check_hygiene(train, val, synthetic)
    # The same lesion of one source in train and val.
    leaked = [Sample(**{**val[0].__dict__, "source": "d", "lesion_id": train[0].lesion_id})]
    with pytest.raises(ValueError, match="^splits: lesion 'L0'"):
        check_hygiene(train, leaked)
    with pytest.raises(ValueError, match="^train: .* is synthetic"):
        check_hygiene([*train, synthetic[0]], val)
    with pytest.raises(ValueError, match="^synthetic: .* is a real image"):
        check_hygiene(train, val, train[:1])
    with pytest.raises(ValueError, match="^val: .* is in the train split"):
        check_hygiene(train, train[:1])
    copy = [Sample(**{**train[1].__dict__, "key": "t/1", "source": "t", "split": "test"})]
    with pytest.raises(ValueError, match="same file as a test image"):
        check_hygiene(train, val, test=copy)


def test_synthetic_arms_draw_the_requested_ratio_and_keep_origins(tmp_path: Path) -> None:
    real = make_samples(tmp_path / "train", 10)
    synthetic = make_samples(tmp_path / "syn", 8, origin="synthetic", source="s")
    config = ExperimentConfig(ratios=(0.5, 2.0), real_weight=4.0)
    arms = {arm.name: arm for arm in config.arms}
    half = arm_data(arms["mixed@0.5"], real, synthetic, seed=0, real_weight=4.0)
    assert (half.n_real, half.n_synthetic) == (10, 5)
    capped = arm_data(arms["mixed@2"], real, synthetic, seed=0, real_weight=4.0)
    assert capped.n_synthetic == 8  # capped by the pool
    weighted = arm_data(arms["weighted@1"], real, synthetic, seed=0, real_weight=4.0)
    assert weighted.weights == [4.0] * 10 + [1.0] * 8
    assert [s.origin for s in weighted.train][-1] == "synthetic"
    pretrain = arm_data(arms["pretrain_finetune@1"], real, synthetic, seed=0, real_weight=4.0)
    assert pretrain.train == real and {s.origin for s in pretrain.pretrain} == {"synthetic"}
    assert arm_data(arms["traditional_aug"], real, synthetic, 0, 1.0).strong_augment
    with pytest.raises(ValueError, match="^synthetic"):
        arm_data(arms["mixed@0.5"], real, [], seed=0, real_weight=1.0)


# --- Weights ----------------------------------------------------------------------------------


def test_imagenet_weights_are_used_only_from_the_cache_and_stand_ins_are_labelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch.hub keeps its folder in a module global; monkeypatch restores it afterwards.
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    config = ClassifierConfig(architecture="resnet18", image_size=32)
    model, info = build_classifier(config, 1)
    assert info.source == "random-init" and model.fc.out_features == 1
    path = weights_file("resnet18")
    assert path.parent == tmp_path / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    official_shape = {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(model.state_dict() | official_shape, path)
    _, info = build_classifier(config, 1)
    assert info.source == "stand-in" and info.file == path.name and not info.official
    _, info = build_classifier(ClassifierConfig(architecture="resnet18", pretrained=False), 1)
    assert info.source == "random-init"


# --- End to end -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_downstream_experiment_end_to_end(tmp_path: Path) -> None:
    train = make_samples(tmp_path / "train", 60)
    val = make_samples(tmp_path / "val", 24, split="val", source="v", seed=1)
    synthetic = make_samples(tmp_path / "syn", 30, origin="synthetic", source="s", seed=2)
    test = make_samples(tmp_path / "test", 48, split="external-test", source="t", seed=3)
    config = ExperimentConfig(
        classifier=ClassifierConfig(image_size=16, epochs=3, batch_size=16, width=4),
        strategies=("baseline", "traditional_aug", "mixed", "pretrain_finetune", "weighted"),
        ratios=(0.5,),
        seeds=(0, 1, 2),
        pretrain_epochs=1,
        bootstrap=50,
    )
    progress: list[tuple[int, int]] = []
    results = run_experiment(
        config,
        train=train,
        val=val,
        synthetic=synthetic,
        test_set=LockedTestSet("external", lambda: test),
        on_progress=lambda done, total, message: progress.append((done, total)),
    )
    json.dumps(results)  # JSON-ready
    assert (
        progress[-1][0] == progress[-1][1] == 6 * 3 * 3 + 3 * 1
    )  # arms x seeds x epochs + pre-training
    arms = results["arms"]
    assert set(arms) == {
        "baseline",
        "traditional_aug",
        "mixed@0.5",
        "mixed@1",
        "pretrain_finetune@1",
        "weighted@1",
    }
    assert arms["baseline"]["train_synthetic"] == 0 and arms["mixed@0.5"]["train_synthetic"] == 30
    baseline = arms["baseline"]["groups"]
    assert baseline["all"]["n"] == 48 and baseline["V-VI"]["n"] == 16
    assert len(baseline["all"]["auroc_per_seed"]) == 3
    low, high = baseline["all"]["auroc_ci"]
    assert low <= baseline["all"]["auroc"] <= high
    assert baseline["all"]["auroc"] > 0.8  # the blobs are easy to tell apart
    assert arms["baseline"]["weights"]["source"] == "random-init"
    assert set(arms["baseline"]["fairness"]) >= {
        "equal_opportunity_groups",
        "equalized_odds_groups",
    }
    diff = results["differences"]["mixed@1"]["V-VI"]
    assert diff["absolute_ci"][0] <= diff["absolute"] <= diff["absolute_ci"][1]
    gate = results["go_no_go"]["fst_v_vi_improvement"]
    assert gate["available"] and gate["relative"] == pytest.approx(diff["relative"])
    assert "definition" in results["go_no_go"]["fst_i_iii_change"]
    # Origins travel into the batches: losses are recorded per origin.
    assert arms["baseline"]["history"][0][0]["train_loss_synthetic"] is None
    mixed_epoch = arms["mixed@0.5"]["history"][0][-1]
    assert mixed_epoch["samples"] == {"real": 60, "synthetic": 30}
    assert mixed_epoch["train_loss_synthetic"] > 0 and mixed_epoch["train_loss_real"] > 0
    pretrain = arms["pretrain_finetune@1"]["history"][0]
    assert pretrain[0]["phase"] == "pretrain" and pretrain[0]["samples"]["real"] == 0
    assert pretrain[-1]["phase"] == "train" and pretrain[-1]["samples"]["synthetic"] == 0
    assert results["predictions"]["keys"][0] == "t/0"
    assert len(results["predictions"]["scores"]["baseline"]["0"]) == 48


def test_the_multi_class_head_scores_malignancy_as_the_summed_malignant_classes(
    tmp_path: Path,
) -> None:
    from validation.downstream.train import predict_scores

    train = make_samples(tmp_path / "train", 24)
    train = [
        Sample(**{**s.__dict__, "diagnosis": "bcc"}) if s.malignant and i % 2 else s
        for i, s in enumerate(train)
    ]
    val = make_samples(tmp_path / "val", 12, split="val", source="v")
    config = ClassifierConfig(image_size=16, epochs=1, batch_size=8, width=4, task="diagnosis")
    classes = ("bcc", "melanoma", "nevus")
    cache = ImageCache(16)
    result = train_classifier(config, train, val, seed=0, cache=cache, classes=classes)
    assert result.model.head.out_features == 3 and result.best_epoch == 1
    scores = predict_scores(result.model, config, classes, val, cache)
    with torch.no_grad():
        x = (cache.stack(val).float() / 255 - 0.5) / 0.5
        probs = torch.softmax(result.model(x), dim=1).numpy()
    assert scores == pytest.approx(probs[:, 0] + probs[:, 1], abs=1e-5)


def test_training_is_seeded(tmp_path: Path) -> None:
    from validation.downstream.train import predict_scores

    train = make_samples(tmp_path / "train", 24)
    val = make_samples(tmp_path / "val", 12, split="val", source="v")
    cache = ImageCache(16)
    classes = ("melanoma", "nevus")

    def scores(seed: int) -> np.ndarray:
        model = train_classifier(
            TINY, train, val, seed=seed, cache=cache, classes=classes, strong_augment=True
        ).model
        return predict_scores(model, TINY, classes, val, cache)

    first = scores(0)
    assert np.array_equal(first, scores(0))
    assert not np.array_equal(first, scores(1))

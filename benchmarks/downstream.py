"""Speed of downstream evaluation: classifier training throughput and the bootstrap evaluation.

Measures the library code downstream runs execute: ``train_classifier`` (images per second
over training epochs, validation included) for the small CNN at 32 px and ResNet-18 at 64 px
(224 px too on CUDA), and ``evaluate``-style bootstrap figures (per-group AUROC CIs and
paired differences with 1,000 resamples) for a 600-image test set. Prints a table and writes
a JSON record with the machine and the date to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generation.phantom import PhantomConfig, build_phantom_dataset, read_phantom_metadata  # noqa: E402
from validation.downstream.config import ClassifierConfig  # noqa: E402
from validation.downstream.data import ImageCache, Sample  # noqa: E402
from validation.downstream.metrics import BootstrapDraws, group_masks, paired_difference  # noqa: E402
from validation.downstream.train import train_classifier  # noqa: E402


def phantom_samples(count: int, folder: Path) -> list[Sample]:
    build_phantom_dataset(PhantomConfig(count=count, image_size=32, seed=0), folder)
    rows = read_phantom_metadata(folder / "metadata.csv")
    return [
        Sample(
            key=str(row["image_id"]),
            path=folder / str(row["file"]),
            diagnosis=str(row["diagnosis"]),
            malignant=bool(row["malignant"]),
            fst=int(row["fst"]),
            lesion_id=str(row["lesion_id"]),
        )
        for row in rows
    ]


def bench_training(
    samples: list[Sample], architecture: str, size: int, epochs: int, device: str
) -> dict[str, Any]:
    train = samples[: int(len(samples) * 0.8)]
    val = [Sample(**{**s.__dict__, "split": "val"}) for s in samples[len(train) :]]
    config = ClassifierConfig(
        architecture=architecture, image_size=size, epochs=epochs, pretrained=False
    )
    cache = ImageCache(size)
    cache.stack(samples)  # decoding is shared by every arm; time training alone
    started = time.perf_counter()
    train_classifier(
        config, train, val, seed=0, cache=cache, classes=("melanoma", "nevus"), device=device
    )
    seconds = time.perf_counter() - started
    return {
        "architecture": architecture,
        "image_size": size,
        "train_images": len(train),
        "epochs": epochs,
        "seconds": round(seconds, 2),
        "images_per_second": round(len(train) * epochs / seconds, 1),
    }


def bench_bootstrap(n_test: int, seeds: int, n_boot: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    y = (rng.random(n_test) < 0.3).astype(int)
    fsts = [1 + i % 6 for i in range(n_test)]
    base = rng.normal(0, 1, (seeds, n_test)) + y
    aug = base + 0.2 * y
    started = time.perf_counter()
    for mask in group_masks(fsts).values():
        draws = BootstrapDraws.make(y[mask], seeds, n_boot, rng)
        draws.auroc(base[:, mask])
        paired_difference(y[mask], base[:, mask], aug[:, mask], draws=draws)
    return {
        "test_images": n_test,
        "seeds": seeds,
        "bootstrap": n_boot,
        "seconds_per_arm_pair": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=400, help="phantom images (80% train)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = [("small_cnn", 32), ("resnet18", 64)]
    if device == "cuda":
        settings += [("resnet18", 224), ("efficientnet_b0", 224)]
    with tempfile.TemporaryDirectory() as tmp:
        samples = phantom_samples(args.images, Path(tmp) / "phantom")
        training = [bench_training(samples, a, s, args.epochs, device) for a, s in settings]
    bootstrap = bench_bootstrap(600, 3, 1000)
    record = {
        "date": dt.date.today().isoformat(),
        "host": socket.gethostname(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": device,
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        },
        "training": training,
        "bootstrap": bootstrap,
    }
    print(f"{'architecture':<18}{'px':>5}{'img/s':>10}{'s':>8}")
    for row in training:
        print(
            f"{row['architecture']:<18}{row['image_size']:>5}{row['images_per_second']:>10}{row['seconds']:>8}"
        )
    print(
        f"bootstrap: {bootstrap['seconds_per_arm_pair']} s per arm pair "
        f"({bootstrap['test_images']} test images, {bootstrap['seeds']} seeds, {bootstrap['bootstrap']} resamples)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"downstream-{record['date']}-{record['host']}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

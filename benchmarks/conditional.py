"""Speed of the FST x diagnosis conditional diffusion model: training steps and sampling.

Measures the library code the runs execute (``train_conditional`` with every balancing level
on, ``ConditionalLesionPipeline``), at the cpu-demo model size, on CUDA when available and
on the CPU otherwise. Prints a table and writes a JSON record with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from generation.conditional import (  # noqa: E402
    ConditionalDiffusionConfig,
    ConditionalLesionPipeline,
    TrainingCallback,
    TrainingRecord,
    build_unet,
    make_noise_scheduler,
    train_conditional,
)
from generation.phantom import PhantomConfig, build_phantom_dataset, read_phantom_metadata  # noqa: E402


class StepTimer(TrainingCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        self.times.append(time.perf_counter())


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    }
    try:
        info["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        info["cpu_model"] = platform.processor()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bench_training(size: int, steps: int, device: str, workdir: Path) -> dict[str, Any]:
    phantom = workdir / f"phantom-{size}"
    build_phantom_dataset(PhantomConfig(count=256, image_size=max(32, size), seed=0), phantom)
    records = [
        TrainingRecord(phantom / row["file"], row["fst"], row["diagnosis"])
        for row in read_phantom_metadata(phantom / "metadata.csv")
    ]
    config = ConditionalDiffusionConfig.preset(
        "cpu-demo-32px",
        image_size=size,
        train_steps=steps + 2,
        checkpoint_every=10_000,
        sample_every=0,
    )
    timer = StepTimer()
    train_conditional(config, records, workdir / f"train-{size}", device=device, callbacks=timer)
    gaps = [b - a for a, b in zip(timer.times, timer.times[1:], strict=False)][1:]  # skip warm-up
    return {"image_size": size, "batch_size": config.batch_size, "steps_timed": len(gaps),
            "seconds_per_step_median": statistics.median(gaps), "samples_per_second": config.batch_size / statistics.median(gaps)}  # fmt: skip


def bench_sampling(size: int, images: int, device: str, guidance: float) -> dict[str, Any]:
    config = ConditionalDiffusionConfig.preset("cpu-demo-32px", image_size=size)
    pipeline = ConditionalLesionPipeline(
        build_unet(config),
        make_noise_scheduler(config),
        fsts=list(config.fsts),
        diagnoses=list(config.diagnoses),
    ).to(device)
    pipeline.set_progress_bar_config(disable=True)
    labels = [
        (fst, config.diagnoses[i % len(config.diagnoses)])
        for i, fst in enumerate([1, 2, 3, 4, 5, 6] * images)
    ][:images]
    generators = [torch.Generator().manual_seed(i) for i in range(images)]
    pipeline([1], [config.diagnoses[0]], num_inference_steps=2, guidance_scale=guidance)  # warm-up
    started = time.perf_counter()
    pipeline(
        [f for f, _ in labels],
        [d for _, d in labels],
        guidance_scale=guidance,
        num_inference_steps=25,
        generator=generators,
        output_type="np",
    )
    seconds = time.perf_counter() - started
    return {"image_size": size, "images": images, "guidance_scale": guidance, "steps": 25, "sampler": "ddim",
            "seconds": seconds, "images_per_second": images / seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="32,64", help="comma-separated image sizes")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per size")
    parser.add_argument("--images", type=int, default=24, help="images sampled per setting")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = [int(s) for s in args.sizes.split(",")]
    record: dict[str, Any] = {"benchmark": "conditional", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "device": device, "training": [], "sampling": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            record["training"].append(bench_training(size, args.steps, device, Path(tmp)))
            for guidance in (1.0, 2.0):
                record["sampling"].append(bench_sampling(size, args.images, device, guidance))
    print(
        f"{record['date']}  {record['machine']['cpu_model']}  ({device}, {record['machine']['torch_threads']} threads)"
    )
    for row in record["training"]:
        print(
            f"train {row['image_size']:>4} px  batch {row['batch_size']}: {row['seconds_per_step_median']:.3f} s/step ({row['samples_per_second']:.1f} samples/s)"
        )
    for row in record["sampling"]:
        print(
            f"sample {row['image_size']:>3} px  guidance {row['guidance_scale']}: {row['images_per_second']:.2f} images/s (DDIM 25 steps)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"conditional-{record['date'][:10]}-{record['machine']['host']}.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

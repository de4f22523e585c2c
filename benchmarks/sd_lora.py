"""Stable Diffusion LoRA training: peak GPU memory and samples/s at 512 px, bf16.

Builds the SD 1.5 architecture with random weights (``TinySDConfig.sd15()``; memory and speed
do not depend on the values; with a real model in the cache pass ``--base-model``), then runs
the project's own ``train_lora`` with its default settings (rank 8, UNet attention, bf16 base
with fp32 adapters) on phantom images. Reports the peak allocated memory (the issue's
requirement: it fits in 24 GB) and the step time, and writes a JSON record with the machine
and the date. On a machine without CUDA it runs too (use a small ``--resolution``), which
checks the script, not the figures.
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from generation.conditional import TrainingCallback, TrainingRecord  # noqa: E402
from generation.phantom import PhantomConfig, build_phantom_dataset, read_phantom_metadata  # noqa: E402
from generation.sd_finetune.config import LoraTrainingConfig  # noqa: E402
from generation.sd_finetune.lora import train_lora  # noqa: E402
from generation.tiny_sd import TinySDConfig, save_tiny_sd  # noqa: E402

GIB = 2**30


class StepTimer(TrainingCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())


def machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="", help="a real SD folder or hub id (cached)")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--mixed-precision", default="bf16", choices=("no", "fp16", "bf16"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--text-encoder", action="store_true", help="also train text-encoder LoRA")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fairderm-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.work.mkdir(parents=True, exist_ok=True)
    base_model = args.base_model
    standin = not base_model
    if standin:
        base_model = str(save_tiny_sd(args.work / "sd15-standin", TinySDConfig.sd15()))
    phantom = args.work / "phantom"
    build_phantom_dataset(PhantomConfig(count=64, image_size=128, seed=0), phantom)
    records = [
        TrainingRecord(phantom / row["file"], row["fst"], row["diagnosis"])
        for row in read_phantom_metadata(phantom / "metadata.csv")
    ]
    diagnoses = tuple(sorted({r.diagnosis for r in records}))
    config = LoraTrainingConfig(
        base_model=base_model,
        diagnoses=diagnoses,
        resolution=args.resolution,
        batch_size=args.batch_size,
        train_steps=args.steps,
        mixed_precision=args.mixed_precision,
        gradient_checkpointing=args.gradient_checkpointing,
        train_text_encoder=args.text_encoder,
        checkpoint_every=10**6,
        sample_every=0,
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    timer = StepTimer()
    output = args.work / f"lora-{dt.datetime.now():%H%M%S}"
    started = time.perf_counter()
    result = train_lora(config, records, output, device=device, callbacks=timer)
    total = time.perf_counter() - started
    gaps = [b - a for a, b in zip(timer.times, timer.times[1:], strict=False)]
    step = statistics.median(gaps) if gaps else None
    peak = torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None
    record = {
        "benchmark": "sd_lora",
        "date": dt.date.today().isoformat(),
        "machine": machine(device),
        "weights": "stand-in (random, SD 1.5 architecture)" if standin else base_model,
        "settings": {
            "resolution": args.resolution,
            "batch_size": args.batch_size,
            "mixed_precision": args.mixed_precision,
            "gradient_checkpointing": args.gradient_checkpointing,
            "train_text_encoder": args.text_encoder,
            "rank": config.rank,
            "steps": args.steps,
        },
        "seconds_per_step": round(step, 4) if step else None,
        "samples_per_second": round(args.batch_size / step, 2) if step else None,
        "peak_gpu_memory_gib": round(peak, 2) if peak is not None else None,
        "fits_in_24_gib": peak < 24 if peak is not None else None,
        "wall_seconds": round(total, 1),
        "final_loss": result.final_loss,
    }
    print(json.dumps(record, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"sd_lora-{record['date']}-{device}-{args.resolution}px.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

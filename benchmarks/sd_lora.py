"""Stable Diffusion LoRA training: samples/s, % of peak and peak GPU memory at 512 px, bf16.

Builds the SD 1.5 architecture with random weights (``TinySDConfig.sd15()``; memory and speed
do not depend on the values; with a real model in the cache pass ``--base-model``), then runs
the project's own ``train_lora`` with its default settings (rank 8, UNet attention, bf16 base
with fp32 adapters) on phantom images, once per ``--batch-sizes`` entry. Reports samples/s
(median step after the first), the FLOPs of one real training step (counted with
``torch.utils.flop_counter`` over the first step: VAE encoding, text encoder, UNet forward and
backward, optimiser), TFLOP/s and % of the peak, and the peak allocated memory (the issue's
requirement: batch 4 fits in 24 GB). Writes a JSON record with the machine and the date.

On a machine without CUDA it runs too: ``--smoke`` (the tiny stand-in at 64 px, 3 steps)
checks the script; without ``--smoke`` it trains the SD 1.5 stand-in at full size on the CPU
and records the process's resident high-water mark per row, an estimate of the GPU memory
(same saved activations, plus the runtime), never a measurement of it.
"""

from __future__ import annotations

import argparse
import os
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

from benchmarks._perf import (  # noqa: E402
    GIB,
    Budget,
    Peaks,
    Record,
    StepMeter,
    base_record,
    default_json,
    error_text,
    process_peak_gib,
    rate,
    reset_process_peak,
)
from generation.conditional import TrainingRecord  # noqa: E402
from generation.phantom import PhantomConfig, build_phantom_dataset, read_phantom_metadata  # noqa: E402
from generation.sd_finetune.config import LoraTrainingConfig  # noqa: E402
from generation.sd_finetune.lora import train_lora  # noqa: E402
from generation.tiny_sd import TinySDConfig, save_tiny_sd  # noqa: E402

#: Memory the CUDA context takes on the card outside PyTorch's allocator (about).
CUDA_CONTEXT_GIB = 0.5


def standin(folder: Path, config: TinySDConfig, device: str) -> Path:
    """Save the random stand-in, initialised on the GPU when there is one (much faster)."""
    if device.startswith("cuda"):
        try:
            with torch.device(device):
                return save_tiny_sd(folder, config)
        except (RuntimeError, NotImplementedError):
            pass
    return save_tiny_sd(folder, config)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default="", help="a real SD folder or hub id (cached)")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-sizes", default="4", help="comma-separated, one run each")
    parser.add_argument("--mixed-precision", default="bf16", choices=("no", "fp16", "bf16"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--text-encoder", action="store_true", help="also train text-encoder LoRA")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, 3 steps")
    parser.add_argument("--budget-s", type=float, default=600.0, help="wall-clock budget")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the bf16 peak")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "fairderm-bench")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (default: results/)")
    args = parser.parse_args(argv)

    # Run as a script (run_all.sh), the imports count against the budget too.
    budget = Budget(args.budget_s, since_process_start=__name__ == "__main__")
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    if args.smoke:
        args.resolution, args.steps, args.mixed_precision = 64, 3, "no"
    dtype = {"no": "fp32", "fp16": "fp16", "bf16": "bf16"}[args.mixed_precision]
    path = args.json or default_json(f"sd_lora-{args.resolution}px", device)
    record = Record(path, base_record("sd_lora", device))
    try:
        peaks = Peaks(device, (dtype,), args.peak_tflops)
        args.work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        base_model = args.base_model
        weights = base_model
        if not base_model:
            config = TinySDConfig() if args.smoke else TinySDConfig.sd15()
            folder = args.work / ("tiny-sd" if args.smoke else "sd15-standin")
            base_model = str(standin(folder, config, device))
            weights = (
                f"stand-in (random weights, {'tiny' if args.smoke else 'SD 1.5'} architecture)"
            )
        phantom = args.work / "phantom"
        build_phantom_dataset(PhantomConfig(count=64, image_size=128, seed=0), phantom)
        records = [
            TrainingRecord(phantom / row["file"], row["fst"], row["diagnosis"])
            for row in read_phantom_metadata(phantom / "metadata.csv")
        ]
        record.update(
            weights=weights,
            peaks=peaks.to_dict(),
            setup_seconds=round(time.perf_counter() - started, 1),
        )
        diagnoses = tuple(sorted({r.diagnosis for r in records}))
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            row: dict[str, Any] = {
                "resolution": args.resolution,
                "batch_size": batch_size,
                "mixed_precision": args.mixed_precision,
                "gradient_checkpointing": args.gradient_checkpointing,
                "train_text_encoder": args.text_encoder,
                "steps": args.steps,
            }
            if not budget.allows(30):
                row.update(status="skipped", reason=f"budget: {budget.left():.0f} s left")
                record.add_row(row)
                continue
            config = LoraTrainingConfig(
                base_model=base_model,
                diagnoses=diagnoses,
                resolution=args.resolution,
                batch_size=batch_size,
                train_steps=args.steps,
                mixed_precision=args.mixed_precision,
                gradient_checkpointing=args.gradient_checkpointing,
                train_text_encoder=args.text_encoder,
                checkpoint_every=10**6,
                sample_every=0,
            )
            if device == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            else:
                reset_process_peak()
            meter = StepMeter(device, budget)
            started = time.perf_counter()
            try:
                result = train_lora(
                    config, records, args.work / f"lora-b{batch_size}-{time.time_ns()}",
                    device=device, callbacks=meter,
                )  # fmt: skip
            except Exception as error:  # recorded; the next batch size still runs
                meter.close()
                row.update(status="failed", reason=error_text(error))
                record.add_row(row)
                continue
            step = meter.step_seconds()
            per_second = batch_size / step if step else None
            flops_per_sample = (
                meter.flops_first_step / batch_size if meter.flops_first_step else None
            )
            peak, source = peaks.peak(dtype)
            memory = torch.cuda.max_memory_allocated() / GIB if device == "cuda" else None
            # What the caching allocator held at its peak: the card must have this much (plus
            # the CUDA context), so "fits" is judged on it, not on allocated.
            reserved = torch.cuda.max_memory_reserved() / GIB if device == "cuda" else None
            cpu_memory = process_peak_gib() if device == "cpu" else None
            row.update(
                status="ok",
                rank=config.rank,
                steps_done=result.final_step,
                seconds_per_step=round(step, 4) if step else None,
                samples_per_second=round(per_second, 2) if per_second else None,
                tflop_per_sample=round(flops_per_sample / 1e12, 4) if flops_per_sample else None,
                flops_counted="one whole training step (the first), divided by the batch size",
                peak_tflops=peak,
                peak_source=source,
                **rate(flops_per_sample, per_second, peak),
                peak_gpu_memory_gib=round(memory, 2) if memory is not None else None,
                peak_gpu_reserved_gib=round(reserved, 2) if reserved is not None else None,
                fits_in_24_gib=reserved + CUDA_CONTEXT_GIB < 24 if reserved is not None else None,
                fits_judged_on=f"peak reserved by the caching allocator + {CUDA_CONTEXT_GIB} GiB CUDA context",
                # CPU only: the process's resident high-water mark over this row (model load
                # included), an estimate of the GPU figure, never a measurement of it.
                cpu_process_peak_memory_gib=round(cpu_memory, 2) if cpu_memory else None,
                wall_seconds=round(time.perf_counter() - started, 1),
                final_loss=result.final_loss,
            )
            record.add_row(row)
            print(
                f"LoRA {args.resolution} px batch {batch_size}: {row['samples_per_second']} samples/s, "
                f"{row['achieved_tflops']} TFLOP/s ({row['percent_of_peak']}% of {peak}), "
                f"peak memory {row['peak_gpu_memory_gib']} GiB allocated, "
                f"{row['peak_gpu_reserved_gib']} GiB reserved"
                + (f" (CPU process high-water mark {cpu_memory:.2f} GiB)" if cpu_memory else ""),
                flush=True,
            )
        record.update(status="done", seconds=round(budget.spent(), 1))
    except BaseException as error:
        record.update(status="failed", error=error_text(error), seconds=round(budget.spent(), 1))
        raise
    print(f"wrote {path}")
    return record.data


if __name__ == "__main__":
    main()

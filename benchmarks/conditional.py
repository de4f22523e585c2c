"""Speed of the FST x diagnosis conditional diffusion model: training steps and sampling.

Measures the library code the runs execute (``train_conditional`` with every balancing level
on, ``ConditionalLesionPipeline``). On CUDA the default configurations are the GPU presets at
64, 128 and 256 px (``gpu-64px``, ``gpu-128px``, ``gpu-256px``: their UNets and batch sizes);
on the CPU the cpu-demo model at 32 and 64 px. Training reports samples/s (median step after
the first) and the FLOPs of one real step (counted with ``torch.utils.flop_counter`` over the
first step: forward, backward, optimiser), hence TFLOP/s and % of the peak of the training's
precision: the GPU presets train under bf16 autocast (``mixed_precision="bf16"``), measured
against the bf16 peak; fp32 configs against an fp32 matrix product timed in this run.
Sampling (fp32 weights) reports images/s (DDIM, 25 steps, guidance on and off) and its FLOPs
per image, against an fp32 product on the CPU and, on CUDA, a TF32 product (cuDNN runs fp32
convolutions as TF32 by default). Prints a table and writes a JSON record with the machine
and the date.
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
    rate,
    synchronize,
)
from generation.conditional import (  # noqa: E402
    ConditionalDiffusionConfig,
    ConditionalLesionPipeline,
    TrainingRecord,
    build_unet,
    make_noise_scheduler,
    train_conditional,
)
from generation.flops import count_flops  # noqa: E402
from generation.phantom import PhantomConfig, build_phantom_dataset, read_phantom_metadata  # noqa: E402

SAMPLING_STEPS = 25


def parse_configs(text: str) -> list[tuple[str, int | None]]:
    """``"gpu-64px,cpu-demo-32px@64"`` -> ``[("gpu-64px", None), ("cpu-demo-32px", 64)]``."""
    out: list[tuple[str, int | None]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, size = part.partition("@")
        if name not in ConditionalDiffusionConfig.PRESETS:
            raise SystemExit(f"--configs: unknown preset {name!r}")
        out.append((name, int(size) if size else None))
    return out


def make_config(preset: str, size: int | None, **overrides: Any) -> ConditionalDiffusionConfig:
    if size is not None:
        overrides["image_size"] = size
    return ConditionalDiffusionConfig.preset(preset, **overrides)


def records_for(workdir: Path) -> list[TrainingRecord]:
    """128 phantom images at 64 px (the dataset resizes them to the model's size)."""
    phantom = workdir / "phantom"
    build_phantom_dataset(PhantomConfig(count=128, image_size=64, seed=0), phantom)
    return [
        TrainingRecord(phantom / row["file"], row["fst"], row["diagnosis"])
        for row in read_phantom_metadata(phantom / "metadata.csv")
    ]


def bench_training(
    preset: str, size: int | None, steps: int, device: str, workdir: Path,
    records: list[TrainingRecord], budget: Budget, peaks: Peaks,
) -> dict[str, Any]:  # fmt: skip
    config = make_config(
        preset, size, train_steps=steps + 1, checkpoint_every=10_000, sample_every=0
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    meter = StepMeter(device, budget)
    try:
        train_conditional(
            config, records, workdir / f"train-{preset}-{config.image_size}", device=device,
            callbacks=meter,
        )  # fmt: skip
    finally:
        meter.close()
    step = meter.step_seconds()
    per_second = config.batch_size / step if step else None
    flops = meter.flops_first_step / config.batch_size if meter.flops_first_step else None
    # bf16 autocast (the GPU presets): matrix products and convolutions in bf16.
    precision = "bf16" if config.mixed_precision == "bf16" else "fp32"
    peak, source = peaks.peak(precision)
    return {
        "preset": preset,
        "image_size": config.image_size,
        "block_out_channels": list(config.block_out_channels),
        "parameters": sum(p.numel() for p in build_unet(config).parameters()),
        "batch_size": config.batch_size,
        "precision": "bf16 autocast" if precision == "bf16" else "fp32",
        "steps_timed": max(0, len(meter.times) - 1),
        "seconds_per_step_median": round(step, 5) if step else None,
        "samples_per_second": round(per_second, 2) if per_second else None,
        "tflop_per_sample": round(flops / 1e12, 6) if flops else None,
        "peak_tflops": peak,
        "peak_source": source,
        **rate(flops, per_second, peak),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / GIB, 2)
        if device.startswith("cuda")
        else None,
    }


def bench_sampling(
    preset: str, size: int | None, images: int, device: str, guidance: float, peaks: Peaks
) -> dict[str, Any]:
    config = make_config(preset, size)
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
    one_step, _ = count_flops(
        lambda: pipeline(
            [1],
            [config.diagnoses[0]],
            num_inference_steps=1,
            guidance_scale=guidance,
            output_type="np",
        )
    )  # also the warm-up
    synchronize(device)
    started = time.perf_counter()
    pipeline(
        [f for f, _ in labels],
        [d for _, d in labels],
        guidance_scale=guidance,
        num_inference_steps=SAMPLING_STEPS,
        generator=generators,
        output_type="np",
    )
    synchronize(device)
    seconds = time.perf_counter() - started
    per_second = images / seconds
    flops = one_step * SAMPLING_STEPS
    # fp32 weights; on CUDA cuDNN runs the convolutions (most of the FLOPs) as TF32 by default,
    # so the fp32 product would be the wrong ceiling (shares of 95-169% on 2026-11-30).
    tf32 = device.startswith("cuda") and torch.backends.cudnn.allow_tf32
    peak, source = peaks.peak("tf32" if tf32 else "fp32")
    return {"preset": preset, "image_size": config.image_size, "images": images, "guidance_scale": guidance,
            "steps": SAMPLING_STEPS, "sampler": "ddim", "seconds": round(seconds, 3),
            "images_per_second": round(per_second, 2), "tflop_per_image": round(flops / 1e12, 6),
            "peak_tflops": peak, "peak_source": source, **rate(flops, per_second, peak)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--configs",
        default="",
        help="comma-separated presets, each optionally @size (default: gpu-64px,gpu-128px,"
        "gpu-256px on CUDA; cpu-demo-32px@32,cpu-demo-32px@64 on the CPU)",
    )
    parser.add_argument("--sizes", default="", help="cpu-demo model at these sizes (old option)")
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per config")
    parser.add_argument("--images", type=int, default=24, help="images sampled per setting")
    parser.add_argument("--smoke", action="store_true", help="CPU, cpu-demo at 32 px, 2 steps")
    parser.add_argument("--budget-s", type=float, default=900.0, help="wall-clock budget")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (default: results/)")
    args = parser.parse_args(argv)
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    if args.smoke:
        configs: list[tuple[str, int | None]] = [("cpu-demo-32px", 32)]
        args.steps, args.images = 2, 4
    elif args.configs:
        configs = parse_configs(args.configs)
    elif args.sizes:
        configs = [("cpu-demo-32px", int(s)) for s in args.sizes.split(",")]
    elif device == "cuda":
        configs = [("gpu-64px", None), ("gpu-128px", None), ("gpu-256px", None)]
    else:
        configs = [("cpu-demo-32px", 32), ("cpu-demo-32px", 64)]
    # Run as a script (run_all.sh), the imports count against the budget too.
    budget = Budget(args.budget_s, since_process_start=__name__ == "__main__")
    path = args.json or default_json("conditional", device)
    record = Record(path, {**base_record("conditional", device), "training": [], "sampling": []})
    try:
        peaks = Peaks(device, ("fp32", "tf32", "bf16"))
        record.update(peaks=peaks.to_dict())
        with tempfile.TemporaryDirectory() as tmp:
            records = records_for(Path(tmp))
            for preset, size in configs:
                label = {"preset": preset, "image_size": size}
                if not budget.allows(20):
                    record.add_row({**label, "status": "skipped", "reason": "budget"}, "training")
                    continue
                try:
                    row = bench_training(
                        preset, size, args.steps, device, Path(tmp), records, budget, peaks
                    )
                    record.add_row({**row, "status": "ok"}, "training")
                except Exception as error:  # recorded; the next config still runs
                    record.add_row({**label, "status": "failed", "reason": error_text(error)}, "training")  # fmt: skip
                needed = 10.0
                for guidance in (1.0, 2.0):
                    if not budget.allows(needed):
                        record.add_row({**label, "guidance_scale": guidance, "status": "skipped",
                                        "reason": f"budget: {budget.left():.0f} s left, needs {needed:.0f} s"},
                                       "sampling")  # fmt: skip
                        continue
                    try:
                        started = time.perf_counter()
                        row = bench_sampling(preset, size, args.images, device, guidance, peaks)
                        record.add_row({**row, "status": "ok"}, "sampling")
                        # Guidance 2 runs the UNet on twice the rows: about twice as long.
                        needed = max(needed, 2.2 * (time.perf_counter() - started) + 2)
                    except Exception as error:  # recorded; the next setting still runs
                        record.add_row({**label, "guidance_scale": guidance, "status": "failed",
                                        "reason": error_text(error)}, "sampling")  # fmt: skip
        record.update(status="done", seconds=round(budget.spent(), 1))
    except BaseException as error:
        record.update(status="failed", error=error_text(error), seconds=round(budget.spent(), 1))
        raise
    data = record.data
    machine = data["machine"]
    print(
        f"{data['date']}  {machine.get('gpu', machine['cpu_model'])}  ({device}, {machine['torch_threads']} threads)"
    )
    for row in data["training"]:
        if row["status"] != "ok":
            print(f"train {row['preset']}: {row['status']} {row.get('reason', '')}")
            continue
        print(
            f"train {row['preset']:<14} {row['image_size']:>4} px  batch {row['batch_size']}: "
            f"{row['seconds_per_step_median']} s/step ({row['samples_per_second']} samples/s, "
            f"{row['achieved_tflops']} TFLOP/s, {row['percent_of_peak']}% of {row['peak_tflops']})"
        )
    for row in data["sampling"]:
        if row["status"] == "ok":
            print(
                f"sample {row['preset']:<14} {row['image_size']:>3} px guidance {row['guidance_scale']}: "
                f"{row['images_per_second']} images/s (DDIM 25 steps, {row['achieved_tflops']} TFLOP/s)"
            )
    print(f"wrote {path}")
    return data


if __name__ == "__main__":
    main()

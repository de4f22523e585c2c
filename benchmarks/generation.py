"""Stable Diffusion generation throughput: stock diffusers recipes beside the project's path.

One run, one model, one machine. The SD 1.5 architecture at 512 px (real weights when a copy
is in the Hugging Face cache or given with ``--model``; otherwise random weights built from the
config, ``TinySDConfig.sd15()``: throughput does not depend on the values), guidance 7.5.

Rows (the issue's anchors, measured on one H200, in brackets):

* ``stock-seed``: ``pipe(prompt)`` fp16, PNDM 50 steps, batch 1 [0.38 img/s];
* ``stock-batched``: the same with batch 16 [3.06 img/s];
* ``stock-bf16-dpm25``: bf16, DPM-Solver++ 25 steps, batch 32 [6.2 img/s];
* ``project-eager``: the project's generation path (``generate_images`` with ``SDSampler``
  and ``FastPathConfig``: plans, provenance, atomic PNGs on writer threads) in bf16 with
  channels_last and fused projections, not compiled;
* ``project-compiled``: the same with the UNet compiled and replayed as CUDA graphs
  [stock + channels_last + compile: 8.2 img/s];
* ``project-compiled-fp8``: the same with fp8 projections (Hopper only), plus the image check
  against ``project-compiled`` on the same seeds (LPIPS < 0.02).

Every row is end to end with the images on disk as PNGs (the stock rows save each
``PIL.Image`` in turn, as a script around ``pipe()`` does). FLOPs per image are counted with
``torch.utils.flop_counter`` (``generation.flops``), so each row also gives TFLOP/s and % of
the peak (the stated H200 bf16 peak, else a matrix product timed in this run). The JSON record
is rewritten after every row; ``--budget-s`` skips rows that would not fit and stops a row's
timed loop early (its figure then covers fewer images).

``--smoke`` runs every row on the CPU with the tiny stand-in (64 px, a few steps, fp32) in
well under a minute: it checks the script, not the figures.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._perf import (  # noqa: E402
    GIB,
    Budget,
    Peaks,
    Record,
    base_record,
    default_json,
    error_text,
    rate,
    synchronize,
)
from benchmarks.gpu.report import adapter_line  # noqa: E402
from generation.fast import FastPathConfig, image_agreement, pixel_differences  # noqa: E402
from generation.flops import sd_flops_per_image  # noqa: E402
from generation.generate import GeneratedImage, generate_images  # noqa: E402
from generation.plans import GenerationConfig, GenerationItem  # noqa: E402
from generation.sd_finetune.config import DEFAULT_CAPTION, caption  # noqa: E402
from generation.sd_finetune.sampling import SDSampler  # noqa: E402
from generation.stable_diffusion import (  # noqa: E402
    ModelNotCachedError,
    load_sd_pipeline,
    swap_scheduler,
    weights_provenance,
)
from generation.tiny_sd import TinySDConfig, build_tiny_sd_pipeline  # noqa: E402

#: Hub ids of SD 1.5 looked up in the local cache (never downloaded).
REAL_MODELS = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")
GUIDANCE = 7.5
#: The issue's target: 60,000 images in an hour on one H200.
TARGET_IMAGES_PER_SECOND = 16.7
#: The fp8 image check of the issue: LPIPS to the bf16 image of the same seed.
FP8_LPIPS_LIMIT = 0.02
DIAGNOSES = ("nevus", "melanoma", "bcc", "seborrheic_keratosis")


@dataclass
class RowSpec:
    """One measured configuration."""

    name: str
    kind: str  # "stock" or "project"
    dtype: str
    scheduler: str
    steps: int
    batch_size: int
    images: int
    fast: FastPathConfig | None = None
    needs_s: float = 30.0  # budget left needed to start the row (compilation included)
    compare_to: str | None = None
    anchor: float | None = None  # the H200 figure, images/s
    notes: list[str] = field(default_factory=list)
    per_fst_lora: bool = False  # six random per-FST LoRA adapters on the UNet (project rows)


def gpu_rows(images: int, compile_mode: str) -> list[RowSpec]:
    """The GPU rows, most needed first: a row that no longer fits the budget is skipped."""
    eager = FastPathConfig(
        dtype="bf16", channels_last=True, fuse_qkv=True, writer_threads=8, pad_batches=True
    )
    compiled = FastPathConfig.gpu(fuse_qkv=True, compile_mode=compile_mode)
    fp8 = FastPathConfig.gpu(fuse_qkv=True, compile_mode=compile_mode, fp8=True)
    dpm = "dpmsolver++"
    return [
        RowSpec("stock-batched", "stock", "fp16", "pndm", 50, 16, 16, needs_s=25, anchor=3.06),
        RowSpec("project-eager", "project", "bf16", dpm, 25, 32, images // 2, eager, 25),
        RowSpec("project-compiled", "project", "bf16", dpm, 25, 32, images, compiled, 90, anchor=8.2),
        RowSpec("stock-bf16-dpm25", "stock", "bf16", dpm, 25, 32, 32, needs_s=20, anchor=6.2),
        RowSpec(
            "project-compiled-fp8", "project", "bf16", dpm, 25, 32, images // 2, fp8, 80,
            compare_to="project-compiled",
        ),
        RowSpec("stock-seed", "stock", "fp16", "pndm", 50, 1, 2, needs_s=15, anchor=0.38),
        # Last: the same compiled path with per-FST adapters fused into weight banks (one skin
        # type per batch, weights copied in place at each switch); compiles again.
        RowSpec(
            "project-compiled-per-fst-lora", "project", "bf16", dpm, 25, 32, 6 * 32,
            FastPathConfig.gpu(compile_mode=compile_mode), 110, per_fst_lora=True,
            notes=["6 random rank-8 adapters on the UNet attention, fuse_lora (weight banks)"],
        ),
    ]  # fmt: skip


def smoke_rows() -> list[RowSpec]:
    eager = FastPathConfig(channels_last=True, fuse_qkv=True, vae_batch_size=2, writer_threads=2)
    return [
        RowSpec("stock-batched", "stock", "fp32", "pndm", 4, 4, 4),
        RowSpec("project-eager", "project", "fp32", "dpmsolver++", 3, 4, 8, eager),
        RowSpec(
            "project-compiled",
            "project",
            "fp32",
            "dpmsolver++",
            3,
            4,
            8,
            FastPathConfig(compile_mode="default"),
            notes=["--smoke: compilation is not run on the CPU"],
        ),
        RowSpec(
            "project-compiled-fp8",
            "project",
            "bf16",
            "dpmsolver++",
            3,
            4,
            4,
            FastPathConfig(dtype="bf16", fp8=True),
            compare_to="project-eager",
        ),
        RowSpec("stock-bf16-dpm25", "stock", "fp32", "dpmsolver++", 3, 4, 4),
        RowSpec("stock-seed", "stock", "fp32", "pndm", 4, 1, 1),
        RowSpec(
            "project-compiled-per-fst-lora",
            "project",
            "fp32",
            "dpmsolver++",
            3,
            4,
            12,
            FastPathConfig(fuse_lora=True, writer_threads=2),
            per_fst_lora=True,
            notes=["--smoke: eager, 6 random rank-8 adapters fused into weight banks"],
        ),
    ]


def add_per_fst_adapters(pipe: StableDiffusionPipeline, rank: int = 8) -> dict[int, str]:
    """Six random LoRA adapters (one per FST) on the UNet attention, as per-FST training
    makes them; ``B`` is random too, so every adapter changes the weights."""
    from peft import LoraConfig

    from generation.sd_finetune.config import DEFAULT_UNET_TARGETS

    adapters = {fst: f"fst{fst}" for fst in range(1, 7)}
    generator = torch.Generator().manual_seed(0)
    for name in adapters.values():
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(DEFAULT_UNET_TARGETS))
        pipe.unet.add_adapter(config, adapter_name=name)
    # Both factors from one seeded generator (peft draws A from the global RNG), so that two
    # calls give the same adapters: the per-FST check builds its reference with a second call.
    with torch.no_grad():
        for path, parameter in pipe.unet.named_parameters():
            if "lora_A" in path:
                scale = parameter.shape[1] ** -0.5
            elif "lora_B" in path:
                scale = 0.01
            else:
                continue
            noise = torch.randn(parameter.shape, generator=generator) * scale
            parameter.copy_(noise.to(parameter.dtype))
    return adapters


def per_fst_check(
    spec: RowSpec,
    master: StableDiffusionPipeline,
    made: list[GeneratedImage],
    plan: list[GenerationItem],
    work: Path,
    weights: str,
) -> dict[str, Any]:
    """Whether the row's images carry their own skin type's adapter.

    The timed row switches adapters in place between batches (weight banks under a compiled
    UNet and, on a GPU, CUDA graphs that read weights at fixed addresses). Here the first
    image of each skin type is made again by the project's eager path on a fresh copy of the
    model with the same six adapters as peft layers (``set_adapters``, nothing fused), and,
    as the baseline a wrong switch would give, with each type's prompt and seed but the next
    type's adapter. Passes when every image is at least 3 times nearer (mean absolute
    difference in 8-bit levels) its own reference than the wrong-adapter one.
    """
    assert spec.fast is not None  # noqa: S101 - the row table sets it
    firsts: dict[int, GeneratedImage] = {}
    for image in made:
        firsts.setdefault(image.fst, image)
    fsts = sorted(firsts)
    by_index = {item.index: item for item in plan}
    items = [by_index[firsts[fst].index] for fst in fsts]
    if len(items) < 2:
        return {"status": "skipped", "reason": f"images of {len(items)} skin type(s) only"}

    # One eager copy with the six adapters as peft layers; two samplers over it, mapping each
    # skin type to its own adapter and to the next one (a sampler selects adapters per call).
    pipe = swap_scheduler(copy_pipe(master), spec.scheduler)
    adapters = add_per_fst_adapters(pipe)

    def reference(name: str, shift: int) -> np.ndarray:
        sampler = SDSampler(
            pipe=pipe,
            caption_template=DEFAULT_CAPTION,
            resolution=master.unet.config.sample_size * master.vae_scale_factor,
            guidance_scale=GUIDANCE,
            num_inference_steps=spec.steps,
            fast=FastPathConfig(dtype=spec.fast.dtype),
            adapters={fst: adapters[(fst - 1 + shift) % 6 + 1] for fst in adapters},
        )
        found = generate_images(
            sampler, items, work / name, batch_size=len(items),
            provenance={"benchmark": "generation", "check": name, "weights": weights},
        )  # fmt: skip
        by_fst = {image.fst: image.path for image in found}
        return pixels([by_fst[fst] for fst in fsts])

    candidate = pixels([firsts[fst].path for fst in fsts])
    own_diff, own_psnr = pixel_differences(reference("own-adapter", 0), candidate)
    next_diff, _ = pixel_differences(reference("next-adapter", 1), candidate)
    rows = [
        {
            "fst": fst,
            "mean_abs_diff_own_8bit": round(own, 3),
            "mean_abs_diff_next_adapter_8bit": round(wrong, 3),
            "psnr_own_db": round(psnr, 2),
        }
        for fst, own, wrong, psnr in zip(fsts, own_diff, next_diff, own_psnr, strict=True)
    ]
    passed = all(
        3 * row["mean_abs_diff_own_8bit"] <= row["mean_abs_diff_next_adapter_8bit"]
        and row["mean_abs_diff_next_adapter_8bit"] > 0
        for row in rows
    )
    return {
        "status": "ok",
        "what": "first image of each skin type vs the eager path with peft adapters "
        f"({spec.fast.dtype}, nothing fused), same prompt and seed; baseline: the next type's adapter",
        "per_fst": rows,
        "passed": passed,
    }


def pixels(paths: list[Path]) -> np.ndarray:
    """The images' 8-bit RGB values, stacked ``N x H x W x 3``."""
    arrays = []
    for path in paths:
        with Image.open(path) as image:
            arrays.append(np.asarray(image.convert("RGB")))
    return np.stack(arrays)


def load_master(
    model: str, smoke: bool, device: str
) -> tuple[StableDiffusionPipeline, dict[str, Any]]:
    """The fp32 pipeline every row copies, on ``device``, and what its weights are."""
    if smoke:
        pipe = build_tiny_sd_pipeline(TinySDConfig())
        return pipe.to(device), {"weights": "stand-in: tiny random pipeline (64 px), --smoke"}
    candidates = [model] if model else list(REAL_MODELS)
    for candidate in candidates:
        try:
            provenance = weights_provenance(candidate)
        except (ModelNotCachedError, FileNotFoundError):
            if model:
                raise
            continue
        pipe = load_sd_pipeline(candidate, device=device)
        return pipe, {"weights": provenance.label, "model": provenance.to_dict()}
    started = time.perf_counter()
    try:
        with torch.device(device):  # initialise on the GPU: seconds instead of a minute
            pipe = build_tiny_sd_pipeline(TinySDConfig.sd15())
    except (RuntimeError, NotImplementedError):
        pipe = build_tiny_sd_pipeline(TinySDConfig.sd15()).to(device)
    return pipe.to(device), {
        "weights": "stand-in: random weights, SD 1.5 architecture (TinySDConfig.sd15()); "
        "throughput does not depend on the values, image content does",
        "build_seconds": round(time.perf_counter() - started, 1),
    }


def copy_pipe(master: StableDiffusionPipeline) -> StableDiffusionPipeline:
    """An independent copy of the master's models (prepare/compile changes them in place)."""
    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(master.vae),
        text_encoder=copy.deepcopy(master.text_encoder),
        tokenizer=master.tokenizer,
        unet=copy.deepcopy(master.unet),
        scheduler=copy.deepcopy(master.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def make_plan(count: int, seed: int) -> list[GenerationItem]:
    """``count`` plan items over FST I-VI x ``DIAGNOSES``, as a generate run plans them."""
    cells = 6 * len(DIAGNOSES)
    config = GenerationConfig(rule="per_cell", count=max(1, math.ceil(count / cells)), seed=seed)
    return config.plan(DIAGNOSES)[:count]


def prompt(item: GenerationItem) -> str:
    return caption(DEFAULT_CAPTION, item.fst, item.diagnosis, "")


def free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: str) -> float | None:
    return (
        round(torch.cuda.max_memory_allocated(device) / GIB, 2)
        if device.startswith("cuda")
        else None
    )


def run_stock(
    spec: RowSpec, master: StableDiffusionPipeline, plan: list[GenerationItem], warm: list[GenerationItem],
    out: Path, device: str, budget: Budget, size: int,
) -> dict[str, Any]:  # fmt: skip
    """``pipe(prompts)`` batch after batch, each image saved as PNG; the stock recipe."""
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    pipe = copy_pipe(master).to(device=device, dtype=dtypes[spec.dtype])
    swap_scheduler(pipe, spec.scheduler)

    def call(items: list[GenerationItem], steps: int) -> list[Image.Image]:
        return pipe(
            [prompt(item) for item in items],
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
            generator=[torch.Generator().manual_seed(item.seed) for item in items],
            height=size,
            width=size,
        ).images

    started = time.perf_counter()
    call(warm[: spec.batch_size], min(spec.steps, 4))
    synchronize(device)
    warm_s = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    started = time.perf_counter()
    for start in range(0, len(plan), spec.batch_size):
        if done and not budget.allows(10):
            break
        batch = plan[start : start + spec.batch_size]
        for item, image in zip(batch, call(batch, spec.steps), strict=True):
            image.save(out / f"{item.index:06d}.png")
        done += len(batch)
    synchronize(device)
    seconds = time.perf_counter() - started
    return {
        "images": done,
        "seconds": round(seconds, 3),
        "warmup_seconds": round(warm_s, 2),
        "unet_calls": len(pipe.scheduler.timesteps),
        "scheduler_class": type(pipe.scheduler).__name__,
    }


def run_project(
    spec: RowSpec, master: StableDiffusionPipeline, plan: list[GenerationItem], warm: list[GenerationItem],
    out: Path, device: str, budget: Budget, size: int, weights: str,
) -> dict[str, Any]:  # fmt: skip
    """The project's generation path: ``generate_images`` driving an ``SDSampler``."""
    assert spec.fast is not None  # noqa: S101 - the row table sets it
    spec.fast.check_device(device)  # refuse before copying gigabytes
    pipe = swap_scheduler(copy_pipe(master), spec.scheduler)
    adapters = add_per_fst_adapters(pipe) if spec.per_fst_lora else {}
    sampler = SDSampler(
        pipe=pipe,
        caption_template=DEFAULT_CAPTION,
        resolution=size,
        guidance_scale=GUIDANCE,
        num_inference_steps=spec.steps,
        fast=spec.fast,
        adapters=adapters,
    )
    provenance = {**sampler.provenance(), "benchmark": "generation", "weights": weights}
    warm = warm[: spec.batch_size]
    if adapters:  # one skin type, so that the warm-up batch is a full one (one compilation)
        warm = [dataclasses.replace(item, fst=1) for item in warm]
    started = time.perf_counter()
    generate_images(
        sampler,
        warm,
        out.parent / f"{out.name}-warmup",
        batch_size=spec.batch_size,
        provenance=provenance,
        writer_threads=spec.fast.writer_threads,
    )
    synchronize(device)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    images = generate_images(
        sampler,
        plan,
        out,
        batch_size=spec.batch_size,
        provenance=provenance,
        writer_threads=spec.fast.writer_threads,
        should_stop=lambda: not budget.allows(10),
    )
    synchronize(device)
    seconds = time.perf_counter() - started
    found = {
        "images": len(images),
        "seconds": round(seconds, 3),
        "warmup_seconds": round(warm_s, 2),
        "warmup_note": "first batch: compilation, CUDA graph capture and cuDNN tuning included",
        "unet_calls": len(pipe.scheduler.timesteps),
        "scheduler_class": type(pipe.scheduler).__name__,
        "fast_path": pipe.fairderm_fast_path,
        "images_on_disk_with_provenance": all(image.path.is_file() for image in images),
    }
    if adapters:  # after the timing: it adds an eager copy of the model
        del sampler, pipe
        free(device)
        try:
            found["adapter_check"] = per_fst_check(
                spec, master, images, plan, out.parent / f"{out.name}-check", weights
            )
        except Exception as error:  # recorded; the row's speed stands
            found["adapter_check"] = {"status": "failed", "reason": error_text(error)}
    return found


def agreement(
    spec: RowSpec,
    rows: dict[str, dict[str, Any]],
    folders: dict[str, Path],
    device: str,
    work: Path,
) -> dict[str, Any]:
    """LPIPS and pixel differences between this row's images and ``spec.compare_to``'s."""
    from validation.metrics.weights import LPIPS_ALEX, MissingWeightsError, locate, stage_standin

    reference = rows.get(spec.compare_to or "")
    if not reference or reference.get("status") != "ok":
        return {"status": "skipped", "reason": f"no images from {spec.compare_to}"}
    names = sorted(
        {p.name for p in folders[spec.compare_to].glob("*.png")}
        & {p.name for p in folders[spec.name].glob("*.png")}
    )[:16]
    if not names:
        return {"status": "skipped", "reason": "no images of the same seeds in both rows"}
    torch_home = None
    try:
        locate(LPIPS_ALEX)
    except MissingWeightsError:
        torch_home = str(work / "torch-home")
        stage_standin(LPIPS_ALEX, torch_home)

    def load(folder: Path) -> list[Image.Image]:
        out = []
        for name in names:
            with Image.open(folder / name) as image:
                out.append(image.convert("RGB"))
        return out

    found = image_agreement(
        load(folders[spec.compare_to]),
        load(folders[spec.name]),
        device=device,
        torch_home=torch_home,
    )
    return {
        "status": "ok",
        "reference": spec.compare_to,
        **found,
        "lpips_limit": FP8_LPIPS_LIMIT,
        "passed": found["lpips_max"] < FP8_LPIPS_LIMIT,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model: checks the script")
    parser.add_argument("--model", default="", help="an SD 1.5 folder or cached hub id (default: "
                        "SD 1.5 if cached, else random weights)")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=128, help="timed images of project-compiled")
    parser.add_argument("--rows", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--compile-mode", default="default", choices=("default", "max-autotune"))
    parser.add_argument("--budget-s", type=float, default=270.0, help="wall-clock budget")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the bf16 peak")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (default: results/)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args(argv)

    # Run as a script (run_all.sh), the imports count against the budget too.
    budget = Budget(args.budget_s, since_process_start=__name__ == "__main__")
    device = "cpu" if args.smoke else args.device
    if args.smoke:
        torch.manual_seed(0)
    specs = smoke_rows() if args.smoke else gpu_rows(args.images, args.compile_mode)
    if args.rows:
        wanted = set(args.rows.split(","))
        specs = [spec for spec in specs if spec.name in wanted]
    path = args.json or default_json("generation", device)
    record = Record(path, {**base_record("generation", device), "smoke": args.smoke})
    work = args.work or Path(tempfile.mkdtemp(prefix="fairderm-genbench-"))
    try:
        peaks = Peaks(device, tuple(sorted({s.dtype for s in specs})), args.peak_tflops)
        master, weights = load_master(args.model, args.smoke, device)
        size = master.unet.config.sample_size * master.vae_scale_factor
        record.update(
            weights=weights,
            peaks=peaks.to_dict(),
            settings={"resolution": size, "guidance_scale": GUIDANCE, "budget_s": args.budget_s},
            target_images_per_second=TARGET_IMAGES_PER_SECOND,
        )
        plan = make_plan(max(spec.images for spec in specs), seed=1)
        warm = make_plan(max(spec.batch_size for spec in specs), seed=2)
        rows: dict[str, dict[str, Any]] = {}
        folders: dict[str, Path] = {}
        for spec in specs:
            row: dict[str, Any] = {
                "name": spec.name,
                "kind": spec.kind,
                "per_fst_lora": spec.per_fst_lora,
                "dtype": "fp8+bf16" if spec.fast and spec.fast.fp8 else spec.dtype,
                "scheduler": spec.scheduler,
                "steps": spec.steps,
                "batch_size": spec.batch_size,
                "guidance_scale": GUIDANCE,
                "anchor_h200_images_per_second": spec.anchor,
                "notes": list(spec.notes),
            }
            folders[spec.name] = work / spec.name
            if args.smoke and spec.fast and spec.fast.compile_mode != "none":
                row.update(status="skipped", reason=spec.notes[0])
            elif not budget.allows(spec.needs_s):
                row.update(
                    status="skipped",
                    reason=f"budget: {budget.left():.0f} s left, needs {spec.needs_s:.0f} s",
                )
            else:
                free(device)
                print(f"[{budget.spent():5.0f} s] {spec.name} ...", flush=True)
                try:
                    items = plan[: spec.images]
                    if spec.kind == "stock":
                        found = run_stock(
                            spec, master, items, warm, folders[spec.name], device, budget, size
                        )
                    else:
                        found = run_project(
                            spec,
                            master,
                            items,
                            warm,
                            folders[spec.name],
                            device,
                            budget,
                            size,
                            weights["weights"],
                        )
                    row.update(status="ok", **found)
                except ValueError as error:  # an option this device cannot run
                    row.update(status="skipped", reason=error_text(error))
                except Exception as error:  # recorded; the next row still runs
                    row.update(status="failed", reason=error_text(error))
                row["peak_gpu_memory_gib"] = peak_memory(device)
                if device.startswith("cuda") and spec.fast and spec.fast.compile_mode != "none":
                    torch._dynamo.reset()  # frees the CUDA graph pools of this row
            if row["status"] == "ok":
                flops = sd_flops_per_image(
                    master, height=size, width=size, unet_calls=row["unet_calls"]
                )
                per_second = row["images"] / row["seconds"] if row["seconds"] else None
                peak, source = peaks.peak("fp8" if spec.fast and spec.fast.fp8 else spec.dtype)
                row.update(
                    images_per_second=round(per_second, 3) if per_second else None,
                    images_per_hour=round(per_second * 3600) if per_second else None,
                    tflop_per_image=round(flops["total"] / 1e12, 3),
                    flops=flops,
                    peak_tflops=peak,
                    peak_source=source,
                    **rate(flops["total"], per_second, peak),
                )
                if spec.compare_to:
                    row["image_check"] = agreement(spec, rows, folders, device, work)
            rows[spec.name] = row
            record.add_row(row)
            print(f"[{budget.spent():5.0f} s] {spec.name}: {row['status']} "
                  f"{row.get('images_per_second') or row.get('reason', '')}", flush=True)  # fmt: skip
        record.update(summary=summary(rows), status="done", seconds=round(budget.spent(), 1))
    except BaseException as error:
        record.update(status="failed", error=error_text(error), seconds=round(budget.spent(), 1))
        raise
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(record.data)
    print(f"wrote {path}")
    return record.data


def summary(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The project's best row against the stock batched recipe and the target (rows of the
    same model: the per-FST LoRA row is reported beside them, not compared)."""
    ok = {name: row for name, row in rows.items() if row["status"] == "ok"}
    project = [
        row
        for row in ok.values()
        if row["kind"] == "project" and row.get("images_per_second") and not row["per_fst_lora"]
    ]
    best = max(project, key=lambda row: row["images_per_second"], default=None)
    stock = ok.get("stock-batched", {}).get("images_per_second")
    out: dict[str, Any] = {
        "best_project_row": best["name"] if best else None,
        "best_project_images_per_second": best["images_per_second"] if best else None,
        "stock_batched_images_per_second": stock,
        "target_images_per_second": TARGET_IMAGES_PER_SECOND,
    }
    if best and stock:
        out["speedup_over_stock_batched"] = round(best["images_per_second"] / stock, 2)
        out["at_least_2x_stock_batched"] = best["images_per_second"] >= 2 * stock
    if best:
        out["target_met"] = best["images_per_second"] >= TARGET_IMAGES_PER_SECOND
    return out


def print_table(data: dict[str, Any]) -> None:
    print(
        f"{data['machine'].get('gpu', data['machine']['cpu_model'])}; {data.get('weights', {}).get('weights', '')}"
    )
    print(
        f"{'row':<22} {'status':<8} {'img/s':>8} {'TFLOP/img':>9} {'TFLOP/s':>8} {'% peak':>7} {'anchor':>7}"
    )
    for row in data.get("rows", []):
        print(
            f"{row['name']:<22} {row['status']:<8} {row.get('images_per_second') or '-':>8} "
            f"{row.get('tflop_per_image') or '-':>9} {row.get('achieved_tflops') or '-':>8} "
            f"{row.get('percent_of_peak') or '-':>7} {row.get('anchor_h200_images_per_second') or '-':>7}"
        )
        if row.get("image_check", {}).get("status") == "ok":
            check = row["image_check"]
            print(
                f"{'':<22} vs {check['reference']}: LPIPS mean {check['lpips_mean']:.4f} max {check['lpips_max']:.4f} ({check['lpips_weights']}), PSNR min {check['psnr_min_db']:.1f} dB"
            )
        elif row["status"] != "ok":
            print(f"{'':<22} {row.get('reason', '')[:150]}")
        if "adapter_check" in row:
            print(f"{'':<22} adapters: {adapter_line(row['adapter_check'])}")
    print(data.get("summary", {}))


if __name__ == "__main__":
    main()

"""Helpers of ``run_all.sh``: ``env OUT`` writes the environment record, ``summary OUT`` prints
the short table of every part's JSON (the device tool returns only the end of the output).

Standard library only, so it runs before anything is installed or when a part failed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "torchvision",
    "triton",
    "diffusers",
    "transformers",
    "tokenizers",
    "huggingface-hub",
    "peft",
    "accelerate",
    "safetensors",
    "numpy",
    "pillow",
    "scipy",
    "scikit-learn",
    "lpips",
    "pytorch-fid",
)


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return f"unavailable: {error}"
    return (done.stdout + done.stderr).strip()


def env(out: Path) -> None:
    """``out/env.json``: date, host, Python, package versions and where each was imported from,
    the GPU as torch and nvidia-smi see it, the git commit and CPU count."""
    versions: dict[str, Any] = {}
    for name in PACKAGES:
        try:
            dist = metadata.distribution(name)
            versions[name] = {"version": dist.version, "location": str(dist.locate_file(""))}
        except metadata.PackageNotFoundError:
            versions[name] = None
    record: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": sys.version,
        "executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "packages": versions,
        "git_commit": _run(["git", "rev-parse", "HEAD"]),
        "git_status": _run(["git", "status", "--short"])[:2000],
        "nvidia_smi": _run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit,temperature.gpu",
                "--format=csv",
            ]
        ),
    }
    try:
        import torch

        record["torch_cuda"] = {
            "available": torch.cuda.is_available(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "capability": list(torch.cuda.get_device_capability(0))
            if torch.cuda.is_available()
            else None,
        }
    except Exception as error:  # the record must be written whatever torch does
        record["torch_cuda"] = f"unavailable: {error}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("date", "host", "cpu_count", "torch_cuda")}))
    print({k: (v or {}).get("version") for k, v in versions.items()})


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def adapter_line(check: dict[str, Any]) -> str:
    """One line for the generation benchmark's per-FST adapter check."""
    if check.get("status") != "ok":
        return f"{check.get('status')}: {str(check.get('reason', ''))[:110]}"
    own = max(row["mean_abs_diff_own_8bit"] for row in check["per_fst"])
    wrong = min(row["mean_abs_diff_next_adapter_8bit"] for row in check["per_fst"])
    return f"passed={check['passed']} own<={own} next-adapter>={wrong} (8-bit mean diff)"


def summary(out: Path) -> None:
    """One line per row of every part, then the generation verdict."""
    gen = _load(out / "generation.json")
    if gen:
        print(f"generation [{gen.get('status')}] {gen.get('weights', {}).get('weights', '')[:60]}")
        for row in gen.get("rows", []):
            figure = row.get("images_per_second")
            extra = (
                f"{figure} img/s {row.get('achieved_tflops')} TFLOP/s {row.get('percent_of_peak')}% "
                f"(anchor {row.get('anchor_h200_images_per_second')})"
                if row["status"] == "ok"
                else str(row.get("reason", ""))[:110]
            )
            print(f"  {row['name']:<22} {row['status']:<8} {extra}")
            check = row.get("image_check")
            if check and check.get("status") == "ok":
                print(
                    f"  {'':<22} vs {check['reference']}: LPIPS max {check['lpips_max']:.4f} "
                    f"mean {check['lpips_mean']:.4f} PSNR min {check['psnr_min_db']:.1f} dB "
                    f"passed={check['passed']}"
                )
            adapters = row.get("adapter_check")
            if adapters:
                print(f"  {'':<22} adapters: {adapter_line(adapters)}")
        print(f"  summary: {gen.get('summary')}")
    else:
        print("generation: no JSON")
    lora = _load(out / "sd_lora.json")
    if lora:
        print(f"sd_lora [{lora.get('status')}] {lora.get('error', '')[:100]}")
        for row in lora.get("rows", []):
            print(
                f"  batch {row.get('batch_size')} {row['status']}: {row.get('samples_per_second')} "
                f"samples/s {row.get('achieved_tflops')} TFLOP/s {row.get('percent_of_peak')}% "
                f"mem {row.get('peak_gpu_memory_gib')}/{row.get('peak_gpu_reserved_gib')} GiB "
                f"alloc/resv fits24 {row.get('fits_in_24_gib')} {str(row.get('reason', ''))[:80]}"
            )
    else:
        print("sd_lora: no JSON")
    cond = _load(out / "conditional.json")
    if cond:
        print(f"conditional [{cond.get('status')}] {cond.get('error', '')[:100]}")
        for row in cond.get("training", []):
            print(
                f"  train {row.get('preset')} {row.get('image_size')} px {row['status']}: "
                f"{row.get('samples_per_second')} samples/s {row.get('achieved_tflops')} TFLOP/s "
                f"{row.get('percent_of_peak')}% {str(row.get('reason', ''))[:80]}"
            )
        for row in cond.get("sampling", []):
            print(
                f"  sample {row.get('preset')} {row.get('image_size')} px g{row.get('guidance_scale')} "
                f"{row['status']}: {row.get('images_per_second')} img/s"
            )
    else:
        print("conditional: no JSON")
    inc = _load(out / "inception.json")
    if inc:
        print(f"inception [{inc.get('status')}] {inc.get('error', '')[:100]}")
        for row in inc.get("rows", []):
            print(f"  {row['what'][:60]:<60} {row['images_per_second']} img/s")
        print(
            f"  speedup {inc.get('speedup')} rel. feature diff {inc.get('relative_feature_difference')} "
            f"FID diff {inc.get('fid_difference')} "
            f"pytorch-fid sqrtm patched {inc.get('pytorch_fid_sqrtm_patched')}"
        )
    else:
        print("inception: no JSON")


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    {"env": env, "summary": summary}[command](folder)

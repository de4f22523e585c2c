"""Speed and values of FairDerm's metrics beside the pytorch-fid command line.

Builds two phantom image folders, then times, on the same folders and weights file:

* ``python -m pytorch_fid A B --dims D`` (the reference: its FID value and images/s);
* ``python -m validation metrics --metrics fid --dims D`` with an empty feature cache (cold)
  and again with the cache filled (warm: nothing is recomputed);
* the full metric suite (FID, KID, IS, LPIPS, tone, memorization), cold and warm.

Images/s counts the images of both folders over the wall time of the whole command
(process start and model load included, as a user sees it). Without the official weight
files (offline), random stand-ins are staged in a temporary TORCH_HOME: speeds are real,
values are not comparable with published ones. Writes a JSON record to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from generation.phantom import PhantomConfig, build_phantom_dataset  # noqa: E402
from validation.metrics.weights import (  # noqa: E402
    FID_INCEPTION,
    LPIPS_ALEX,
    MissingWeightsError,
    locate,
    stage_standin,
)


def folders(root: Path, n: int, size: int) -> tuple[Path, Path]:
    """Two folders of ``n`` phantom images each (different seeds), with their labels."""
    out = []
    for name, seed in (("real", 0), ("synthetic", 1)):
        build = root / f"build-{name}"
        build_phantom_dataset(PhantomConfig(count=n, image_size=size, seed=seed), build)
        out.append(build)
    return out[0], out[1]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="images per folder")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--dims", type=int, default=64, choices=(64, 192, 768, 2048))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fairderm-metrics-bench-"))
    env = dict(os.environ)
    weights_note = "official files from the torch hub cache"
    try:
        locate(FID_INCEPTION)
        locate(LPIPS_ALEX)
    except MissingWeightsError:
        home = work / "torch"
        stage_standin(FID_INCEPTION, home)
        stage_standin(LPIPS_ALEX, home)
        env["TORCH_HOME"] = str(home)
        weights_note = (
            "random stand-ins (offline): speeds are real, values are not published-comparable"
        )
    try:
        real, synthetic = folders(work, args.n, args.size)
        images = 2 * args.n
        rows: list[dict[str, Any]] = []
        seconds, out = timed(
            [sys.executable, "-m", "pytorch_fid", str(real / "images"), str(synthetic / "images"),
             "--dims", str(args.dims), "--device", args.device, "--batch-size", str(args.batch_size),
             "--num-workers", "0"],
            env,
        )  # fmt: skip
        reference = float(re.search(r"FID:\s+([-0-9.eE+]+)", out).group(1))
        rows.append({"what": "python -m pytorch_fid (FID)", "seconds": seconds, "fid": reference})
        cache = work / "cache"
        ours = [sys.executable, "-m", "validation", "metrics", "--real", str(real), "--synthetic", str(synthetic),
                "--dims", str(args.dims), "--device", args.device, "--batch-size", str(args.batch_size),
                "--cache-dir", str(cache), "--json"]  # fmt: skip
        for label, metrics in (
            ("FID", "fid"),
            ("all metrics", "fid,kid,is,lpips,tone,memorization"),
        ):
            shutil.rmtree(cache, ignore_errors=True)
            for state in ("cold cache", "warm cache"):
                seconds, out = timed([*ours, "--metrics", metrics], env)
                result = json.loads(out)
                rows.append(
                    {
                        "what": f"python -m validation metrics ({label}, {state})",
                        "seconds": seconds,
                        "fid": result["fid"]["overall"]["value"],
                        "kid": result.get("kid", {}).get("overall", {}).get("mean"),
                        "is": result.get("is", {}).get("synthetic", {}).get("mean"),
                        "lpips_fidelity": result.get("lpips", {})
                        .get("fidelity", {})
                        .get("overall", {})
                        .get("mean"),
                        "feature_misses": result["cache"]["feature_misses"],
                        "timings": result["timings"],
                    }
                )
        for row in rows:
            row["images_per_s"] = images / row["seconds"]
            row["fid_minus_pytorch_fid"] = row["fid"] - reference
        print(
            f"{images} images ({args.n} per folder, {args.size} px), {args.dims}-d, device {args.device}; weights: {weights_note}"
        )
        print(f"{'command':<58} {'s':>7} {'img/s':>7} {'FID':>12} {'diff':>10}")
        for row in rows:
            print(
                f"{row['what']:<58} {row['seconds']:7.1f} {row['images_per_s']:7.1f} {row['fid']:12.6g} {row['fid_minus_pytorch_fid']:10.2g}"
            )
        record = {
            "benchmark": "metrics",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": {
                "host": socket.gethostname(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "cpu_count": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            },
            "settings": {**vars(args), "out": str(args.out), "weights": weights_note},
            "rows": rows,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        target = args.out / f"metrics-{dt.date.today().isoformat()}-{socket.gethostname()}.json"
        target.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {target}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

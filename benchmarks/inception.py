"""Inception feature extraction: the project's metrics code beside pytorch-fid's, same images.

Writes two folders of ``--n`` PNGs (smooth random images at ``--size`` px, two seeds), then
extracts FID Inception features of both, in one process, on one device:

* the project: ``folder_items`` -> sha256 of every file (the feature cache's key) ->
  ``InceptionFeatures.extract`` with no cache (images decoded on ``loader_threads`` threads);
* pytorch-fid: ``pytorch_fid.fid_score.get_activations`` with the CLI's settings
  (``InceptionV3([block])``, ``num_workers = min(8, CPUs)`` DataLoader processes), the code
  ``python -m pytorch_fid`` runs.

Reports images/s of each (model load excluded, warm-up batch excluded), the largest feature
difference, and the FID of the two folders from each side's features (the speeds are written
first: at 2048-d each FID is a 2048 x 2048 matrix square root). Without the official weight file (offline), random stand-in weights are
staged: speeds are real, values are not comparable with published ones (labelled
non-official). Writes a JSON record.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._perf import (  # noqa: E402
    Budget,
    Record,
    base_record,
    default_json,
    error_text,
    synchronize,
)
from generation.flops import count_flops  # noqa: E402
from validation.metrics.backbones import LOADER_THREADS, InceptionFeatures  # noqa: E402
from validation.metrics.cache import FeatureCache  # noqa: E402
from validation.metrics.distances import fid_from_features  # noqa: E402
from validation.metrics.fid_compat import patch_pytorch_fid_sqrtm  # noqa: E402
from validation.metrics.images import FILE_THREADS, folder_items, with_sha256s  # noqa: E402
from validation.metrics.weights import (  # noqa: E402
    FID_INCEPTION,
    MissingWeightsError,
    locate,
    stage_standin,
    using_hub_dir,
)


def write_folder(folder: Path, n: int, size: int, seed: int) -> Path:
    """``n`` smooth random RGB PNGs (8x8 noise upscaled bicubically), written on threads."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tint = rng.uniform(0.7, 1.3, size=3)
    cells = [
        np.clip(rng.uniform(0, 255, size=(8, 8, 3)) * tint, 0, 255).astype(np.uint8)
        for _ in range(n)
    ]

    def save(index: int) -> None:
        image = Image.fromarray(cells[index]).resize((size, size), Image.Resampling.BICUBIC)
        image.save(folder / f"{index:06d}.png")

    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(save, range(n)))
    return folder


def pytorch_fid_workers() -> int:
    """The DataLoader workers ``python -m pytorch_fid`` uses on this machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return min(cpus, 8)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images per folder")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--dims", type=int, default=2048, choices=(64, 192, 768, 2048))
    parser.add_argument("--batch-size", type=int, default=50, help="both paths (the CLI's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="CPU, 2 x 16 images at 64 px, 64-d")
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=None, help="output JSON (default: results/)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.size, args.device, args.batch_size, args.dims = 16, 64, "cpu", 8, 64
    from pytorch_fid.fid_score import calculate_frechet_distance, get_activations
    from pytorch_fid.inception import InceptionV3

    # SciPy >= 1.18 dropped sqrtm's disp, which pytorch-fid 0.3.0 passes (validation/metrics/fid_compat.py).
    sqrtm_patched = patch_pytorch_fid_sqrtm()
    # Run as a script (run_all.sh), the imports count against the budget too.
    budget = Budget(args.budget_s, since_process_start=__name__ == "__main__")
    device = args.device
    path = args.json or default_json("inception", device)
    record = Record(path, base_record("inception", device))
    record.update(pytorch_fid_sqrtm_patched=sqrtm_patched)
    work = Path(tempfile.mkdtemp(prefix="fairderm-inception-"))
    try:
        torch_home: str | None = None
        try:
            weights = locate(FID_INCEPTION)
        except MissingWeightsError:
            torch_home = str(work / "torch")
            stage_standin(FID_INCEPTION, torch_home)
            weights = locate(FID_INCEPTION, torch_home)
        started = time.perf_counter()
        folders = [write_folder(work / name, args.n, args.size, seed) for name, seed in (("a", 0), ("b", 1))]  # fmt: skip
        record.update(
            settings={"n_per_folder": args.n, "size": args.size, "dims": args.dims,
                      "batch_size": args.batch_size, "images": "smooth random PNGs, two seeds"},
            weights=weights.to_dict(),
            write_seconds=round(time.perf_counter() - started, 1),
        )  # fmt: skip
        images = 2 * args.n

        # The project's path.
        ours = InceptionFeatures(args.dims, device=device, torch_home=torch_home)
        warm = folder_items(folders[0])[: args.batch_size]
        ours.extract(with_sha256s(warm), FeatureCache(None), args.batch_size)
        synchronize(device)
        started = time.perf_counter()
        project = []
        for folder in folders:
            items = with_sha256s(folder_items(folder))
            project.append(
                ours.extract(items, FeatureCache(None), args.batch_size)[f"pool{args.dims}"]
            )
        synchronize(device)
        ours_s = time.perf_counter() - started
        flops, _ = count_flops(
            lambda: ours.forward(torch.rand(1, 3, args.size, args.size, device=device))
        )
        project_row = {
            "what": "project: validation.metrics InceptionFeatures.extract (sha256 of each file included)",
            "seconds": round(ours_s, 3),
            "images_per_second": round(images / ours_s, 1),
            "loader_threads": LOADER_THREADS,
            "hash_threads": FILE_THREADS,
        }
        # On disk before pytorch-fid's path runs: its loader processes may fail on a machine
        # with little shared memory, and the project's figure must survive that.
        record.update(
            rows=[project_row],
            gflop_per_image=round(flops / 1e9, 3),
            status="project measured; running pytorch-fid",
            seconds=round(budget.spent(), 1),
        )

        # pytorch-fid's path, as its command line runs it.
        workers = pytorch_fid_workers()
        fallback = None
        with using_hub_dir(torch_home):
            model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[args.dims]]).to(device).eval()
        files = [sorted(folder.glob("*.png")) for folder in folders]
        try:
            get_activations(
                files[0][: args.batch_size], model, args.batch_size, args.dims, device, workers
            )
        except RuntimeError as error:  # e.g. DataLoader workers killed: too little /dev/shm
            fallback = f"{workers} loader processes failed ({error_text(error)}); ran with 0"
            workers = 0
            get_activations(
                files[0][: args.batch_size], model, args.batch_size, args.dims, device, 0
            )
        synchronize(device)
        started = time.perf_counter()
        reference = [
            get_activations(f, model, args.batch_size, args.dims, device, workers) for f in files
        ]
        synchronize(device)
        theirs_s = time.perf_counter() - started

        diff = max(float(np.abs(a - b).max()) for a, b in zip(project, reference, strict=True))
        scale = max(float(np.abs(b).max()) for b in reference) or 1.0

        def fid_pf(a: np.ndarray, b: np.ndarray) -> float:
            a, b = a.astype(np.float64), b.astype(np.float64)
            mu = [x.mean(axis=0) for x in (a, b)]
            sigma = [np.cov(x, rowvar=False) for x in (a, b)]
            return float(calculate_frechet_distance(mu[0], sigma[0], mu[1], sigma[1]))

        rows = [
            project_row,
            {
                "what": "pytorch-fid: fid_score.get_activations (the CLI's path)",
                "seconds": round(theirs_s, 3),
                "images_per_second": round(images / theirs_s, 1),
                "num_workers": workers,
                **({"fallback": fallback} if fallback else {}),
            },
        ]
        # The speeds are on disk before the FIDs: at 2048-d each FID is a 2048 x 2048 matrix
        # square root on the CPU (seconds even on 16 cores), which the part's time limit may cut.
        record.update(
            rows=rows,
            speedup=round(theirs_s / ours_s, 2),
            max_abs_feature_difference=diff,
            max_abs_feature=scale,
            relative_feature_difference=diff / scale,
            status="speeds measured; computing FID",
            seconds=round(budget.spent(), 1),
        )
        rows[0]["fid"] = fid_from_features(project[0], project[1])
        rows[1]["fid"] = fid_pf(reference[0], reference[1])
        record.update(
            rows=rows,
            fid_difference=rows[0]["fid"] - rows[1]["fid"],
            status="done",
            seconds=round(budget.spent(), 1),
        )
    except BaseException as error:
        record.update(status="failed", error=error_text(error), seconds=round(budget.spent(), 1))
        raise
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    data = record.data
    print(
        f"{images} images at {args.size} px, {args.dims}-d, {device}; {weights.to_dict()['label']}"
    )
    for row in data["rows"]:
        print(f"{row['what']:<90} {row['seconds']:8.2f} s {row['images_per_second']:9.1f} img/s")
    print(
        f"largest feature difference {diff:.3g} (features up to {scale:.3g}); FID {rows[1]['fid']:.6g} (pytorch-fid) vs {rows[0]['fid']:.6g} (project)"
    )
    print(f"wrote {path}")
    return data


if __name__ == "__main__":
    main()

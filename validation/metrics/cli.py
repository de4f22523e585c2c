"""``python -m validation metrics --real DIR --synthetic DIR``: the metrics on two folders.

Like ``python -m pytorch_fid DIR1 DIR2`` (same file selection, same preprocessing, same
weights file), plus KID, IS, LPIPS, tone and memorization, through the same library code
as ``evaluate`` runs. Labels (FST, diagnosis) come from a ``metadata.csv`` in or beside
each folder (columns ``file``, ``fst``, ``diagnosis``) when there is one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from validation.metrics.config import FID_DIMS, LPIPS_NETS, METRICS, MetricsConfig
from validation.metrics.images import ImageItem, folder_items
from validation.metrics.report import write_pair_images
from validation.metrics.suite import evaluate
from validation.metrics.weights import MissingWeightsError


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m validation metrics")
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("--real", required=True, help="folder of real images")
    parser.add_argument("--synthetic", required=True, help="folder of synthetic images")
    parser.add_argument(
        "--train", help="folder of training images for the memorization audit (default: --real)"
    )
    parser.add_argument("--real-metadata", help="labels CSV of the real images")
    parser.add_argument("--synthetic-metadata", help="labels CSV of the synthetic images")
    parser.add_argument(
        "--metrics", default=",".join(METRICS), help=f"comma-separated, from {','.join(METRICS)}"
    )
    parser.add_argument(
        "--dims", type=int, default=2048, choices=FID_DIMS, help="Inception features for FID/KID"
    )
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--lpips-net", default="alex", choices=LPIPS_NETS)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get(
            "FAIRDERM_METRICS_CACHE", str(Path.home() / ".cache" / "fairderm" / "metrics")
        ),
        help="feature cache ('' for none)",
    )
    parser.add_argument(
        "--torch-home",
        default="",
        help="folder with hub/checkpoints/<weights> (default $TORCH_HOME)",
    )
    parser.add_argument("--pairs-dir", help="write flagged memorization pairs side by side here")
    parser.add_argument("--json", action="store_true", help="print the full results as JSON")
    return parser


def _items(folder: str, metadata: str | None) -> list[ImageItem]:
    path = Path(folder)
    if metadata is None and not path.is_dir():
        raise ValueError(f"folder: {path} is not a directory")
    if metadata is None and (path / "images").is_dir() and (path / "metadata.csv").is_file():
        return folder_items(path / "images", path / "metadata.csv")
    return folder_items(path, metadata)


def run(args: argparse.Namespace) -> int:
    try:
        config = MetricsConfig(
            metrics=args.metrics,
            fid_dims=args.dims,
            batch_size=args.batch_size,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            lpips_net=args.lpips_net,
            torch_home=args.torch_home,
        )
        real = _items(args.real, args.real_metadata)
        synthetic = _items(args.synthetic, args.synthetic_metadata)
        train = _items(args.train, None) if args.train else None

        def progress(stage: str, done: int, total: int) -> None:
            if not args.json and done == total:
                print(f"  {stage}: {total} images", file=sys.stderr)

        result = evaluate(
            real,
            synthetic,
            config,
            train=train,
            device=args.device,
            cache_dir=args.cache_dir or None,
            real_label=str(Path(args.real).resolve()),
            on_progress=progress,
        )
    except (ValueError, MissingWeightsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.pairs_dir:
        write_pair_images(result, args.pairs_dir)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    for name, weights in result["weights"].items():
        print(
            f"{name} weights: {weights['file']} sha256 {weights['sha256'][:16]}... {weights['label']}"
        )
    for row in result["summary"]:
        value = row["value"]
        text = (
            "-" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
        )
        if row.get("std") is not None:
            text += f" +/- {row['std']:.3g}"
        target = row.get("target")
        goal = ""
        if target:
            verdict = {True: "met", False: "not met", None: f"not assessed ({target['why']})"}[
                target["met"]
            ]
            goal = f"  target {target['op']} {target['value']:g}: {verdict}"
        print(f"{row['metric']}: {text}  [{row['n']}]{goal}")
        if row.get("warning"):
            print(f"  warning: {row['warning']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))

"""Cost of recording one batch of image hashes in a folder that already lists many images.

``generate_images`` records each batch's sha256 lines after its PNGs are in place, under the
folder's lock, in the thread that drives the model. This times, per batch, at several folder
sizes:

* **journal** (what generation does): ``append_to_manifest``, an fsynced append to
  ``SHA256SUMS.journal``;
* **rewrite** (what it did before): ``compact_manifest(add=batch)``, which reads the whole
  record and rewrites ``SHA256SUMS`` atomically, as the old per-batch update did;
* **compact** (once per run, at its start and end): folding a journal of one run's batches
  into ``SHA256SUMS``.

No images are made: the record's cost does not depend on them. Writes JSON to
``benchmarks/results/``. Example::

    .venv/bin/python benchmarks/manifest.py --sizes 1000 10000 60000 --batches 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generation.manifest import (  # noqa: E402
    JOURNAL_NAME,
    append_to_manifest,
    compact_manifest,
)
from validation.files import atomic_write_text  # noqa: E402


def names(start: int, count: int) -> dict[str, str]:
    """``count`` image names from ``start`` with made-up (but well-formed) sha256 values."""
    return {
        f"{i:06d}.png": hashlib.sha256(str(i).encode()).hexdigest()
        for i in range(start, start + count)
    }


def seed_folder(folder: Path, size: int) -> None:
    """A folder whose SHA256SUMS lists ``size`` images (and no journal)."""
    folder.mkdir(parents=True)
    listed = names(0, size)
    atomic_write_text(folder / "SHA256SUMS", "".join(f"{listed[n]}  {n}\n" for n in sorted(listed)))


def per_batch_ms(
    folder: Path, size: int, batches: int, batch_size: int, record: Callable[..., None]
) -> list[float]:
    times = []
    for batch in range(batches):
        add = names(size + batch * batch_size, batch_size)
        started = time.perf_counter()
        record(folder, add)
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean_ms": statistics.fmean(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 60_000])
    parser.add_argument("--batches", type=int, default=50, help="batches timed per size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--tag", default="vm")
    args = parser.parse_args()
    for name in ("batches", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(size < 0 for size in args.sizes):
        parser.error("--sizes must be at least 0")

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fairderm-manifest-", dir=args.dir) as scratch:
        for size in args.sizes:
            row: dict[str, Any] = {"listed_before": size}
            for label, record in (("journal", append_to_manifest), ("rewrite", compact_manifest)):
                folder = Path(scratch) / f"{label}-{size}"
                seed_folder(folder, size)
                times = per_batch_ms(folder, size, args.batches, args.batch_size, record)
                row[label] = summary(times)
                if label == "journal":
                    journal_lines = args.batches * args.batch_size
                    started = time.perf_counter()
                    compact_manifest(folder)
                    row["compact"] = {
                        "ms": (time.perf_counter() - started) * 1000,
                        "journal_lines": journal_lines,
                    }
                    if (folder / JOURNAL_NAME).exists():
                        raise RuntimeError(f"compact_manifest left {folder / JOURNAL_NAME}")
            row["rewrite_over_journal"] = row["rewrite"]["median_ms"] / row["journal"]["median_ms"]
            rows.append(row)
            print(
                f"{size:>7} listed: journal {row['journal']['median_ms']:7.2f} ms/batch, "
                f"rewrite {row['rewrite']['median_ms']:7.2f} ms/batch "
                f"({row['rewrite_over_journal']:.1f}x), "
                f"compact {row['compact']['ms']:7.1f} ms once"
            )
    record = {
        "benchmark": "manifest",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "filesystem_of_scratch": str(args.dir or tempfile.gettempdir()),
        },
        "batch_size": args.batch_size,
        "batches": args.batches,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"manifest-{dt.date.today().isoformat()}-{args.tag}.json"
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

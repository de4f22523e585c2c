"""Shared parts of the throughput benchmarks: machine record, matmul peak, time budget, JSON.

Every figure is recorded with the machine (GPU name, capability, driver), the date, the
package versions and the command, and "% of peak" always says which peak: the stated H200
bf16 dense matrix rate of issue #11 (about 790 TFLOP/s) or a matrix product timed in the same
run on the same device and dtype (docs/performance.md explains both).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from generation.conditional.training import TrainingCallback
from validation.files import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30

#: Dense matrix peaks stated for a GPU by name fragment (TFLOP/s), with their source.
STATED_PEAKS: dict[str, dict[str, float]] = {
    # The anchor: "the bf16 matrix peak of about 790 TFLOP/s" on one H200; an
    # 8192^3 bf16 product through PyTorch ran at 769-798 TFLOP/s on these machines.
    "H200": {"bf16": 790.0, "fp16": 790.0},
}
PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "numpy",
    "pillow",
    "scipy",
    "lpips",
    "pytorch-fid",
    "triton",
)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """Python and the versions of the packages that shape the figures."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["cuda"] = str(torch.version.cuda)
    return found


def _cpu_model() -> str:
    try:
        return next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        return platform.processor()


def _driver() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else None


def machine(device: str) -> dict[str, Any]:
    """Host, CPU, threads and, on CUDA, the GPU's name, capability, memory and driver."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / GIB, 1),
            multiprocessors=props.multi_processor_count,
            driver=_driver(),
        )
    return info


def command() -> str:
    """The command line that ran this script, relative to the repository root."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def machine_label(device: str) -> str:
    """A short label for file names: the GPU's name, or ``cpu-<host>``."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        return name.lower().replace("nvidia", "").strip().replace(" ", "-") or "gpu"
    return f"cpu-{socket.gethostname()}"


def reset_process_peak() -> bool:
    """Reset this process's resident-memory high-water mark (Linux ``VmHWM``); False where
    that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def process_peak_gib() -> float | None:
    """This process's resident-memory high-water mark in GiB (Linux ``VmHWM``), or None.

    On the CPU it stands in for the GPU's peak allocated memory: the same tensors are kept for
    the backward pass, but it also counts the Python and torch runtime (about 1 GiB) and memory
    the allocator kept from earlier, so it is an estimate, never the GPU figure.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        return None
    return None


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_tflops(
    device: str, dtype: torch.dtype, size: int | None = None, repeats: int = 10
) -> float:
    """TFLOP/s of a square matrix product on random data (never zeros: they run faster).

    ``size`` defaults to 8192 on CUDA (the product KINDS.md's 790 TFLOP/s came from) and 512
    on the CPU. Median of ``repeats`` timed products after three warm-ups.
    """
    size = size or (8192 if device.startswith("cuda") else 512)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    for _ in range(3):
        a @ b
    synchronize(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - started)
    times.sort()
    return 2 * size**3 / times[len(times) // 2] / 1e12


def stated_peak(device: str, dtype: str) -> float | None:
    """The stated dense matrix peak (TFLOP/s) of this GPU for ``dtype``, if one is known."""
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, peaks in STATED_PEAKS.items():
        if fragment in name:
            return peaks.get(dtype)
    return None


@contextlib.contextmanager
def _tf32_matmuls(enabled: bool) -> Iterator[None]:
    """CUDA fp32 matrix products on TF32 tensor cores while inside (restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled or saved
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


class Peaks:
    """The peak each dtype's figures are divided by: stated where known, else measured here."""

    def __init__(self, device: str, dtypes: tuple[str, ...], override: float | None = None):
        self.device = device
        self.override = override
        self.measured: dict[str, float] = {}
        # tf32: an fp32 product on the tensor cores (TF32 inputs), CUDA only like fp16.
        torch_dtypes = {
            "fp32": torch.float32,
            "tf32": torch.float32,
            "fp16": torch.float16,
            "bf16": torch.bfloat16,
        }
        for name in dtypes:
            if name in ("fp16", "tf32") and not device.startswith("cuda"):
                continue
            with _tf32_matmuls(name == "tf32"):
                self.measured[name] = round(matmul_tflops(device, torch_dtypes[name]), 2)

    def peak(self, dtype: str) -> tuple[float | None, str]:
        """(TFLOP/s, where it comes from) for figures computed in ``dtype`` (fp8: vs bf16)."""
        key = "bf16" if dtype == "fp8" else dtype
        if self.override and key in ("bf16", "fp16"):
            return self.override, "--peak-tflops"
        stated = stated_peak(self.device, key)
        if stated is not None:
            return stated, f"stated {key} dense matrix peak of this GPU (issue #11)"
        if key in self.measured:
            return self.measured[key], f"{key} matrix product timed in this run"
        return None, "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured_matmul_tflops": self.measured,
            "stated": {k: stated_peak(self.device, k) for k in ("bf16", "fp16")},
            "override": self.override,
        }


def rate(
    flops_per_item: float | None, items_per_second: float | None, peak: float | None
) -> dict[str, Any]:
    """Achieved TFLOP/s and % of ``peak`` for ``items_per_second`` of ``flops_per_item`` each."""
    if not flops_per_item or not items_per_second:
        return {"achieved_tflops": None, "percent_of_peak": None}
    achieved = flops_per_item * items_per_second / 1e12
    return {
        "achieved_tflops": round(achieved, 2),
        "percent_of_peak": round(100 * achieved / peak, 1) if peak else None,
    }


def process_age() -> float:
    """Seconds since this process started (its imports included), from Linux's ``/proc``
    (as :func:`process_peak_gib`); 0 where it cannot be read, so a budget counts from now."""
    try:
        # Field 22 of /proc/self/stat, after the parenthesised command name: start time in
        # clock ticks after boot; /proc/uptime: seconds since boot.
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - started)


class Budget:
    """Wall-clock seconds a benchmark may spend; parts ask before they start.

    With ``since_process_start`` (a script run as ``__main__``), counted from the process's
    start, not from this object's creation: ``run_all.sh`` stops each part at a hard limit
    measured from its start, and importing torch and diffusers (5-10 s) would otherwise be
    spent outside the budget (on 2026-11-30 the conditional part was stopped at its limit
    while its own budget still allowed a row). A ``main()`` called inside a longer process (a
    test) counts from now.
    """

    def __init__(self, seconds: float, since_process_start: bool = False):
        self.seconds = seconds
        self.started = time.monotonic() - (process_age() if since_process_start else 0.0)

    def spent(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.seconds - self.spent()

    def allows(self, needed: float) -> bool:
        return self.left() >= needed


class Record:
    """A JSON record rewritten atomically after every change, so a killed run leaves its rows."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str) + "\n")

    def add_row(self, row: dict[str, Any], key: str = "rows") -> None:
        self.data.setdefault(key, []).append(row)
        self.save()

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.save()


def base_record(benchmark: str, device: str) -> dict[str, Any]:
    """The fields every benchmark JSON starts with."""
    return {
        "benchmark": benchmark,
        "date": utc_now(),
        "machine": machine(device),
        "versions": versions(),
        "command": command(),
        "status": "running",
    }


def default_json(benchmark: str, device: str) -> Path:
    """``benchmarks/results/<benchmark>-<date>-<machine>.json``."""
    day = dt.date.today().isoformat()
    return ROOT / "benchmarks" / "results" / f"{benchmark}-{day}-{machine_label(device)}.json"


def error_text(error: BaseException) -> str:
    """``Type: message`` of an error, at most 2,000 characters (for JSON rows)."""
    return f"{type(error).__name__}: {error}"[:2000]


class StepMeter(TrainingCallback):
    """A training callback that times steps and counts the FLOPs of the first one.

    ``FlopCounterMode`` is entered when the meter is made (before training starts) and left
    at the end of step 1, so it counts exactly one real step of the project's training loop
    (forward, backward, optimiser; loading the model does no matrix products). Steps after
    the first are timed without it. ``should_stop`` ends training when the budget runs out.
    """

    def __init__(self, device: str, budget: Budget | None = None, margin_s: float = 15.0):
        from generation.flops import flop_counter

        self.device = device
        self.budget = budget
        self.margin_s = margin_s
        self.times: list[float] = []
        self.flops_first_step: int | None = None
        self._counter: Any = flop_counter()
        self._counter.__enter__()

    def close(self) -> None:
        """Leave the counter if training ended before its first step."""
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(None, None, None)
            self.flops_first_step = int(counter.get_total_flops())
        synchronize(self.device)
        self.times.append(time.perf_counter())

    def should_stop(self) -> bool:
        return self.budget is not None and not self.budget.allows(self.margin_s)

    def step_seconds(self) -> float | None:
        """Median seconds per step after the first (warm-up, counted) step."""
        gaps = sorted(b - a for a, b in zip(self.times, self.times[1:], strict=False))
        return gaps[len(gaps) // 2] if gaps else None

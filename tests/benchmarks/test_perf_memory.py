"""The CPU memory high-water mark the LoRA benchmark records in place of GPU memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from benchmarks._perf import process_peak_gib, reset_process_peak

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from benchmarks._perf import process_peak_gib, reset_process_peak
    before = process_peak_gib()
    block = np.ones(2**28 // 8)  # 256 MiB, touched
    del block
    after = process_peak_gib()
    assert reset_process_peak()
    print(before, after, process_peak_gib())
    """
)


def test_the_high_water_mark_sees_a_freed_allocation_and_resets() -> None:
    # A fresh process: this one's own high-water mark is whatever earlier tests left.
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    before, after, reset = map(float, output.split())
    assert after - before > 0.2  # the 256 MiB block counts although it is freed
    assert reset < after - 0.2  # after the reset, only what is resident now
    assert process_peak_gib() is not None and reset_process_peak()

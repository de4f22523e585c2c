"""A forked child killed while drawing a progress bar must not hang its parent's bars."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: Run in a fresh interpreter: the unprotected case wedges tqdm's lock in that process for good.
SCENARIO = textwrap.dedent(
    """
    import os, signal, sys
    from tqdm.auto import tqdm
    from tqdm.std import TqdmDefaultWriteLock
    from generation.forking import private_progress_lock

    for _ in tqdm(range(2), disable=True):  # the parent has drawn a bar: tqdm's lock exists
        pass
    pid = os.fork()
    if pid == 0:
        try:
            if sys.argv[1] == "private":
                private_progress_lock()
            tqdm.get_lock().acquire()  # a bar being drawn ...
            os.kill(os.getpid(), signal.SIGKILL)  # ... when the child is killed
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    lock = TqdmDefaultWriteLock.mp_lock  # what the parent's next bar must take
    free = lock.acquire(timeout=2)
    print("free" if free else "stuck")
    """
)


def parent_after_killed_child(mode: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", SCENARIO, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return completed.stdout.strip()


@pytest.mark.parametrize(("mode", "expected"), [("shared", "stuck"), ("private", "free")])
def test_a_child_with_a_private_progress_lock_cannot_wedge_its_parent(
    mode: str, expected: str
) -> None:
    # "shared" shows the hazard is real on this tqdm; "private" is what forked children do.
    assert parent_after_killed_child(mode) == expected

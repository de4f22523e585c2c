"""Hygiene for processes forked from a parent that may have drawn progress bars.

diffusers' pipelines draw tqdm progress bars, and tqdm guards every bar with one
``multiprocessing`` lock that a process shares with every child forked after its first bar
(tqdm's design for parallel bars). A child that is SIGKILLed while it holds that lock (while
a bar is being created, drawn or closed) leaves it held for good: the parent and every child
forked later then hang at their next progress bar. Celery's prefork pool forks the task
processes and kills them on time limits, and the crash tests kill forked writers on purpose,
so each forked child takes locks of its own with :func:`private_progress_lock`.
"""

from __future__ import annotations

import threading


def private_progress_lock() -> None:
    """Give tqdm, in this process, a lock no other process can hold.

    Call it first thing in a forked child. Bars of this process still never interleave
    (threads share the new lock); bars of different processes may, which is harmless.
    """
    from tqdm import auto, std

    # diffusers uses tqdm.auto's class; a subclass keeps its own lock once it has made one.
    for cls in {std.tqdm, auto.tqdm}:
        cls.set_lock(threading.RLock())

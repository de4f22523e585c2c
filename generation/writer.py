"""PNG encoding and writing on a pool of threads, so the GPU never waits for zlib.

A 512 px PNG takes 30-100 ms to encode at zlib level 6 (noise-like images faster, smooth ones
slower), which at 16 images/s is one to two CPU cores of work. PIL releases the GIL while zlib
compresses and ``hashlib`` while it hashes, so threads encode in parallel with the thread that
drives the model. ``ImageWriter`` bounds the images waiting to be written (``max_pending``), so
memory stays bounded when the model outruns the disk: ``submit`` blocks until a slot is free.

Every file is written as the rest of FairDerm writes files: encoded in memory, then written
to a temporary file beside its destination, flushed and renamed over it
(``validation.files.atomic_write_bytes``), so a crash leaves the old file or the new one,
never half of one. The sha256 is taken from the encoded bytes, which are the file's content.

A writer that fails does not hang the caller: the error is kept, ``submit`` and
``raise_if_failed`` raise it, and closing the writer after a write error cancels what has not
started yet and waits for what has.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from PIL import Image, PngImagePlugin

from validation.checks import check_int
from validation.files import atomic_write_bytes

#: The iTXt key of the provenance JSON in every generated PNG.
PROVENANCE_KEY = "fairderm:provenance"

#: The most writer threads a config may ask for.
MAX_WRITER_THREADS = 64


def encode_png(image: Image.Image, provenance: dict[str, Any]) -> bytes:
    """The PNG file of ``image`` with ``provenance`` as sorted JSON in an iTXt chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PROVENANCE_KEY, json.dumps(provenance, sort_keys=True))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def write_png(image: Image.Image, path: str | Path, provenance: dict[str, Any]) -> str:
    """Encode ``image`` with its provenance and write it atomically; return the file's sha256."""
    data = encode_png(image, provenance)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


class ImageWriter:
    """Writes PNGs on ``threads`` threads with at most ``max_pending`` images not yet written.

    Args:
        threads (`int`): Writer threads; 0 writes in the calling thread inside ``submit``
            (the returned future is already done).
        max_pending (`int`, *optional*): Images submitted but not yet written, at most;
            ``submit`` blocks while this many are pending. Defaults to ``4 * threads``.

    Use it as a context manager: leaving the block waits for every pending write (images
    already made are kept even when the block raised, e.g. because the model failed), except
    after a write error, when the writes that have not started are cancelled.
    """

    def __init__(self, threads: int, max_pending: int = 0):
        self.threads = check_int("threads", threads, 0, MAX_WRITER_THREADS)
        max_pending = check_int("max_pending", max_pending, 0, 1_000_000)
        self.max_pending = max_pending or max(1, 4 * self.threads)
        self._pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix="fairderm-png")
            if self.threads
            else None
        )
        self._slots = threading.BoundedSemaphore(self.max_pending)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._closed = False

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(cancel=self.error is not None)

    @property
    def error(self) -> BaseException | None:
        """The first error a write raised, if any."""
        with self._lock:
            return self._error

    def raise_if_failed(self) -> None:
        """Raise the first write error, if a write has failed."""
        error = self.error
        if error is not None:
            raise error

    def _done(self, future: Future[str]) -> None:
        self._slots.release()
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            with self._lock:
                if self._error is None:
                    self._error = error

    def submit(
        self, image: Image.Image, path: str | Path, provenance: dict[str, Any]
    ) -> Future[str]:
        """Queue ``image`` for writing to ``path``; the future's result is the file's sha256.

        Blocks while ``max_pending`` images wait. Raises the first earlier write error instead
        of queueing more work after a failure.
        """
        if self._closed:
            raise RuntimeError("ImageWriter: submit after close")
        self.raise_if_failed()
        if self._pool is None:
            future: Future[str] = Future()
            try:
                future.set_result(write_png(image, path, provenance))
            except Exception as error:  # the caller sees it through the future, as with threads
                future.set_exception(error)
                with self._lock:
                    self._error = self._error or error
            return future
        self._slots.acquire()
        try:
            future = self._pool.submit(write_png, image, path, provenance)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._done)
        return future

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the pending writes (``cancel``: drop those not started) and stop the threads."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)

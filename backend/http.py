"""HTTP helpers shared by the apps' views."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.http import FileResponse, Http404, HttpResponse


def private_file(
    path: Path | Callable[[], Path], content_type: str, cache_control: str
) -> FileResponse:
    """Stream a file the view has already authorised; 404 if it is gone.

    ``path`` may be a callable that returns it, e.g. ``image.fetch`` to download a file kept
    in remote storage into this machine's cache first.
    """
    try:
        local = path() if callable(path) else path
        handle = open(local, "rb")  # FileResponse closes it
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = cache_control
    return response


def private_bytes(data: bytes, content_type: str) -> HttpResponse:
    """Bytes the view has already authorised, with headers that say nothing about them.

    No file name (``FileResponse`` would send the stored name in ``Content-Disposition``),
    no ``Last-Modified`` or ``ETag`` (file times would date the file), and nothing kept in
    any cache. Blinded study images go through here, so every one of them gets the same
    headers.
    """
    response = HttpResponse(data, content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    response["Content-Length"] = str(len(data))
    return response

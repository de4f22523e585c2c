"""HTTP helpers shared by the apps' views."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.http import FileResponse, Http404


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

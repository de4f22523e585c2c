"""HTTP helpers shared by the apps' views."""

from __future__ import annotations

from pathlib import Path

from django.http import FileResponse, Http404


def private_file(path: Path, content_type: str, cache_control: str) -> FileResponse:
    """Stream a file the view has already authorised; 404 if it is gone."""
    try:
        handle = open(path, "rb")  # FileResponse closes it
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = cache_control
    return response

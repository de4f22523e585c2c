"""PDF rendering of the go/no-go report with WeasyPrint, without its side effect.

Importing ``weasyprint`` sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True`` for the whole
process. FairDerm refuses to import images while that flag is on (a truncated file would be
stored half-decoded), so the flag is put back right after the import; the report's own
pictures are whole PNGs and need no leniency.
"""

from __future__ import annotations

import PIL.ImageFile


class PdfUnavailable(RuntimeError):
    """WeasyPrint cannot load its system libraries (Pango)."""


def render_pdf(html: str) -> bytes:
    """``html`` (self-contained: no external files) as PDF bytes."""
    before = PIL.ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        from weasyprint import HTML
    except OSError as exc:
        raise PdfUnavailable(f"PDF export needs the Pango library on the server ({exc})") from exc
    finally:
        PIL.ImageFile.LOAD_TRUNCATED_IMAGES = before
    return HTML(string=html, base_url=None).write_pdf()

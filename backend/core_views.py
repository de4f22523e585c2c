from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_safe


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for docker compose and load balancers: the process answers and the DB too."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404s under /api/ are JSON like the API's own (``{"detail": ...}``); pages keep theirs.

    A URL the router does not match (``/api/runs/0.5/``, ``/api/runs/1/cancel/x``) never
    reaches DRF, so without this a client parsing JSON got Django's HTML page.
    """
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": "Not found: no API endpoint or object at this URL."}, status=404
        )
    return defaults.page_not_found(request, exception)

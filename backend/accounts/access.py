"""View decorators that gate pages by role; unauthorised users get 404, not 403.

A 404 does not confirm that a page or object exists, which matters for readers who must not
learn anything about the datasets behind a blinded study.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework.permissions import BasePermission

from backend.accounts.roles import can_launch, can_view_data

View = Callable[..., HttpResponse]


def _gate(check: Callable[[Any], bool]) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise Http404
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


data_viewer_required = _gate(can_view_data)
launcher_required = _gate(can_launch)


class CanViewData(BasePermission):
    """DRF: ML engineers and leads may read; only ML engineers may write."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return can_view_data(request.user)
        return can_launch(request.user)

from __future__ import annotations

from django.http import HttpRequest

from backend.accounts.roles import can_decide, can_launch, can_view_data


def roles(request: HttpRequest) -> dict[str, bool]:
    """Expose what the current user may see to every template (navigation links)."""
    user = request.user
    return {
        "can_view_data": can_view_data(user),
        "can_launch": can_launch(user),
        "can_decide": can_decide(user),
    }

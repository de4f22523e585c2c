from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from backend.accounts.access import CanViewData
from backend.api_input import query_choice
from backend.runs.models import Run
from backend.runs.serializers import RunSerializer
from backend.runs.services import cancel_run


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "kind", str, enum=Run.Kind.values, description="Only runs of this kind."
            ),
            OpenApiParameter(
                "status", str, enum=Run.Status.values, description="Only runs in this status."
            ),
        ]
    )
)
class RunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Runs: list and read them; POST launches one (kind, config or preset, datasets, parents)."""

    queryset = Run.objects.prefetch_related("artifacts", "parents", "datasets")
    serializer_class = RunSerializer
    permission_classes = [CanViewData]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        queryset = super().get_queryset()
        if self.action == "list":
            # An unknown value is a 400 naming the choices, not an empty page (or, with a NUL
            # character, a 500 from PostgreSQL).
            for field, choices in (("kind", Run.Kind.values), ("status", Run.Status.values)):
                value = query_choice(self.request, field, choices)
                if value is not None:
                    queryset = queryset.filter(**{field: value})
        return queryset

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        run = cancel_run(self.get_object())
        return Response(RunSerializer(run, context={"request": request}).data)

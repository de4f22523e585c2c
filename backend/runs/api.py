from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from backend.accounts.access import CanViewData
from backend.runs.models import Run
from backend.runs.serializers import RunSerializer
from backend.runs.services import cancel_run


class RunViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Runs: list and read them; POST launches one (kind, config or preset, datasets, parents)."""

    queryset = Run.objects.prefetch_related("artifacts", "parents", "datasets")
    serializer_class = RunSerializer
    permission_classes = [CanViewData]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        queryset = super().get_queryset()
        for field in ("kind", "status"):
            value = self.request.query_params.get(field)
            if value:
                queryset = queryset.filter(**{field: value})
        return queryset

    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        run = cancel_run(self.get_object())
        return Response(RunSerializer(run, context={"request": request}).data)

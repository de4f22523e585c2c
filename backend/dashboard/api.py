from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from backend.accounts.access import CanViewData
from backend.dashboard.models import Decision, Project
from backend.dashboard.report import build_report, snapshot


class DecisionSerializer(serializers.ModelSerializer):
    decided_by = serializers.StringRelatedField()

    class Meta:
        model = Decision
        fields = ["id", "verdict", "reasons", "note", "decided_by", "created_at"]


class ProjectSerializer(serializers.ModelSerializer):
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "synthetic_dataset",
            "evaluation_run",
            "downstream_run",
            "study",
            "targets",
            "decisions",
            "created_at",
        ]


class ProjectViewSet(viewsets.ReadOnlyModelViewSet):
    """Go/no-go projects (read only: leads set targets and decide on the project page)."""

    queryset = Project.objects.prefetch_related("decisions__decided_by")
    serializer_class = ProjectSerializer
    permission_classes = [CanViewData]

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def report(self, request: Request, pk: str | None = None) -> Response:
        """The report computed now: verdict and reasons, every target row with its definition,
        value, CI, n, status and source, failure modes, lineage and the reader statistics."""
        data: dict[str, Any] = snapshot(build_report(self.get_object()))
        return Response(data)

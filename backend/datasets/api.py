from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from backend.accounts.access import CanViewData
from backend.api_input import query_id
from backend.datasets.models import Dataset, Image, TrainingSet
from backend.datasets.serializers import (
    DatasetSerializer,
    DatasetServerImportSerializer,
    DatasetUploadSerializer,
    ImageSerializer,
    TrainingSetSerializer,
)


class DatasetViewSet(viewsets.ReadOnlyModelViewSet):
    """Datasets: list and read them; POST imports one in the background (ML engineers)."""

    queryset = Dataset.objects.all()
    serializer_class = DatasetSerializer
    permission_classes = [CanViewData]

    def get_serializer_class(self):  # type: ignore[no-untyped-def]
        if self.action == "create":
            if getattr(self, "swagger_fake_view", False):  # drf-spectacular building the schema
                return DatasetUploadSerializer
            # A JSON body that is not an object (``0``, ``[]``) has no keys to look at: the
            # serializer answers it with "expected a dictionary" (it used to be a TypeError).
            data = self.request.data
            if isinstance(data, Mapping) and "archive" in data:
                return DatasetUploadSerializer
            return DatasetServerImportSerializer
        return DatasetSerializer

    @extend_schema(
        summary="Import a dataset",
        description=(
            "Multipart with a zip (`archive`, and `metadata_file` unless the CSV is in the "
            "zip), or JSON with server paths (`images_dir`, `metadata`) inside "
            "FAIRDERM_IMPORT_ROOTS. The zip is checked before anything is extracted; the "
            "import runs in the background: poll the dataset until its status leaves "
            "`importing`. ML engineers only."
        ),
        request={
            "multipart/form-data": DatasetUploadSerializer,
            "application/json": DatasetServerImportSerializer,
        },
        responses={
            202: DatasetSerializer,
            400: OpenApiResponse(description="A field is invalid: the body names it."),
            403: OpenApiResponse(description="Not an ML engineer."),
        },
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dataset = serializer.save()
        data = DatasetSerializer(dataset, context=self.get_serializer_context()).data
        location = self.reverse_action("detail", args=[dataset.pk])
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "dataset", int, description="Only the images of this dataset (its id)."
            )
        ]
    )
)
class ImageViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ImageSerializer
    permission_classes = [CanViewData]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        queryset = Image.objects.all()
        if self.action == "list":
            dataset = query_id(self.request, "dataset")
            if dataset is not None:
                queryset = queryset.filter(dataset_id=dataset)
        return queryset


class TrainingSetViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Saved selections of images across datasets; POST creates one (ML engineers)."""

    queryset = TrainingSet.objects.prefetch_related("datasets")
    serializer_class = TrainingSetSerializer
    permission_classes = [CanViewData]

    def perform_create(self, serializer: TrainingSetSerializer) -> None:
        serializer.save(created_by=self.request.user)

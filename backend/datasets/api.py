from rest_framework import viewsets

from backend.accounts.access import CanViewData
from backend.datasets.models import Dataset, Image
from backend.datasets.serializers import DatasetSerializer, ImageSerializer


class DatasetViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Dataset.objects.all()
    serializer_class = DatasetSerializer
    permission_classes = [CanViewData]


class ImageViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ImageSerializer
    permission_classes = [CanViewData]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        queryset = Image.objects.all()
        dataset = self.request.query_params.get("dataset")
        if dataset and dataset.isdigit():
            queryset = queryset.filter(dataset_id=int(dataset))
        return queryset

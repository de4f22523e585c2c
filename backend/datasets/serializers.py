from rest_framework import serializers

from backend.datasets.models import Dataset, Image


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "format",
            "role",
            "origin",
            "status",
            "source",
            "image_count",
            "counts",
            "errors",
            "generated_by",
            "created_at",
        ]
        read_only_fields = fields


class ImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Image
        fields = [
            "id",
            "dataset",
            "image_id",
            "sha256",
            "width",
            "height",
            "diagnosis",
            "diagnosis_original",
            "malignant",
            "fst",
            "fst_source",
            "ita",
            "lesion_id",
            "patient_id",
            "split",
            "origin",
            "provenance",
        ]
        read_only_fields = fields

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from backend.datasets.forms import format_choices
from backend.datasets.models import Dataset, Image, Origin, TrainingSet
from backend.datasets.services import (
    import_server_folder_in_background,
    import_upload_in_background,
)
from validation.vocabulary import DIAGNOSES


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


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A file in a multipart request (a binary string in the schema, not a URL)."""


def _service_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    """A service's ``ValidationError`` as DRF's, keyed by the same fields (400)."""
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


class _ImportFields(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="A unique dataset name.")
    # All formats, as on DatasetSerializer (one enum in the schema); those without a reader
    # are refused with a message saying so.
    format = serializers.ChoiceField(
        choices=Dataset.Format.choices, help_text="A dataset format that has a reader."
    )
    role = serializers.ChoiceField(choices=Dataset.Role.choices, default=Dataset.Role.TRAINING)

    #: Fields of the other way to import; giving both ways is refused.
    other_fields: tuple[str, ...] = ()

    def validate_format(self, value: str) -> str:
        if value not in dict(format_choices()):
            raise serializers.ValidationError(f"the {value} importer is not available yet")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        mixed = [f for f in self.other_fields if f in getattr(self, "initial_data", {})]
        if mixed:
            raise serializers.ValidationError(
                {mixed[0]: "give either a zip (archive) or server paths (images_dir), not both"}
            )
        return attrs


class DatasetUploadSerializer(_ImportFields):
    """POST /api/datasets/ as multipart: a zip of the images, the metadata CSV inside or beside."""

    archive = UploadField(
        help_text="A zip of the images, with the metadata CSV inside unless metadata_file is given."
    )
    metadata_file = UploadField(
        required=False,
        help_text="The metadata CSV, when it is not inside the zip (paths relative to the zip's top).",
    )
    other_fields = ("images_dir", "metadata")

    def create(self, validated_data: dict[str, Any]) -> Dataset:
        try:
            return import_upload_in_background(
                name=validated_data["name"],
                format=validated_data["format"],
                role=validated_data["role"],
                archive=validated_data["archive"],
                metadata_file=validated_data.get("metadata_file"),
                user=self.context["request"].user,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc


class DatasetServerImportSerializer(_ImportFields):
    """POST /api/datasets/ as JSON: a folder and CSV already on the server, in FAIRDERM_IMPORT_ROOTS."""

    images_dir = serializers.CharField(
        max_length=1000,
        help_text="Absolute path of the images folder on the server.",
        error_messages={
            "required": "This field is required (or upload a zip as 'archive', multipart)."
        },
    )
    metadata = serializers.CharField(
        max_length=1000, help_text="Path of the metadata CSV: absolute, or relative to images_dir."
    )
    other_fields = ("archive", "metadata_file")

    def create(self, validated_data: dict[str, Any]) -> Dataset:
        try:
            return import_server_folder_in_background(
                name=validated_data["name"],
                format=validated_data["format"],
                role=validated_data["role"],
                images_dir=validated_data["images_dir"],
                metadata=validated_data["metadata"],
                user=self.context["request"].user,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc


def _filter_list(items: dict[str, Any], model_field: str) -> serializers.JSONField:
    """A training set's JSON filter, described in the schema as the list it must be.

    ``TrainingSet.clean`` checks it (a list of the right values); the schema says so, so that
    clients and the schema walk in tests/security/test_api_bad_input.py know the shape.
    """

    @extend_schema_field({"type": "array", "items": items})
    class FilterList(serializers.JSONField):
        pass

    help_text = TrainingSet._meta.get_field(model_field).help_text
    return FilterList(required=False, help_text=str(help_text))


class TrainingSetSerializer(serializers.ModelSerializer):
    datasets = serializers.PrimaryKeyRelatedField(many=True, queryset=Dataset.objects.all())
    fsts = _filter_list({"type": "integer", "minimum": 1, "maximum": 6}, "fsts")
    diagnoses = _filter_list({"type": "string", "enum": list(DIAGNOSES)}, "diagnoses")
    origins = _filter_list({"type": "string", "enum": list(Origin.values)}, "origins")
    splits = _filter_list({"type": "string", "enum": list(Image.Split.values)}, "splits")
    image_count = serializers.SerializerMethodField()

    class Meta:
        model = TrainingSet
        fields = [
            "id",
            "name",
            "description",
            "datasets",
            "fsts",
            "diagnoses",
            "origins",
            "splits",
            "image_count",
            "created_at",
        ]
        read_only_fields = ["id", "image_count", "created_at"]

    def get_image_count(self, obj: TrainingSet) -> int:
        return obj.images().count()

    def validate_datasets(self, datasets: list[Dataset]) -> list[Dataset]:
        locked = [d.name for d in datasets if d.role == Dataset.Role.EXTERNAL_TEST]
        if locked:
            raise serializers.ValidationError(
                f"{', '.join(locked)} is locked as an external test set"
            )
        return datasets

    def validate(self, attrs: dict) -> dict:
        probe = TrainingSet(**{k: v for k, v in attrs.items() if k != "datasets"})
        try:
            probe.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc
        return attrs

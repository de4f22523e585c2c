from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from backend.datasets.models import Dataset, TrainingSet
from backend.runs.models import Artifact, Run
from backend.runs.services import launch_run

#: What a launch request may set; every other field of a run is written by the worker.
LAUNCH_FIELDS = ("id", "kind", "name", "config", "preset", "parents", "datasets", "training_sets")


class ArtifactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Artifact
        fields = ["name", "kind", "path", "sha256", "size_bytes", "created_at"]


@extend_schema_field({"type": "object", "additionalProperties": True})
class ConfigField(serializers.JSONField):
    """A run's config: a JSON object, checked against the kind's config dataclass at launch."""


class RunSerializer(serializers.ModelSerializer):
    artifacts = ArtifactSerializer(many=True, read_only=True)
    preset = serializers.CharField(write_only=True, required=False, allow_blank=True)
    config = ConfigField(
        required=False,
        default=dict,
        help_text=(
            "Settings of the kind's config dataclass, merged over the preset's; a bad one is "
            'a 400 whose message starts with its name (config: ["count: ..."]).'
        ),
    )
    datasets = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Dataset.objects.all(), required=False
    )
    training_sets = serializers.PrimaryKeyRelatedField(
        many=True, queryset=TrainingSet.objects.all(), required=False
    )
    parents = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Run.objects.all(), required=False
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "kind",
            "name",
            "config",
            "preset",
            "status",
            "cancel_requested",
            "step",
            "total_steps",
            "loss_history",
            "eta_seconds",
            "result",
            "error",
            "worker_host",
            "device",
            "attempts",
            "gpu_seconds",
            "parents",
            "datasets",
            "training_sets",
            "artifacts",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = [f for f in fields if f not in LAUNCH_FIELDS]

    def create(self, validated_data: dict[str, Any]) -> Run:
        try:
            return launch_run(
                kind=validated_data["kind"],
                config=validated_data.get("config") or {},
                preset=validated_data.get("preset") or None,
                datasets=validated_data.get("datasets", []),
                parents=validated_data.get("parents", []),
                training_sets=validated_data.get("training_sets", []),
                user=self.context["request"].user,
                name=validated_data.get("name", ""),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from exc

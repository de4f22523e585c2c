"""The admin's "Import a dataset" form: an uploaded zip, or a folder already on the server."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from backend.datasets.formats import READERS
from backend.datasets.models import Dataset, TrainingSet
from backend.datasets.services import (
    check_server_paths,
    import_roots,
    import_server_folder_in_background,
    import_upload_in_background,
    validate_import_request,
)


def format_choices() -> list[tuple[str, str]]:
    """The dataset formats that have a reader, in the order of ``Dataset.Format``."""
    return [(value, label) for value, label in Dataset.Format.choices if value in READERS]


class DatasetImportForm(forms.Form):
    """Name, format and role, and either a zip (+ optional CSV) or two server paths.

    ``clean`` checks everything that can be checked without reading the upload (the service
    checks the zip itself); ``start`` starts the import in the background and maps the
    service's ``ValidationError`` onto the fields.
    """

    name = forms.CharField(max_length=200)
    format = forms.ChoiceField(choices=format_choices)
    role = forms.ChoiceField(choices=Dataset.Role.choices, initial=Dataset.Role.TRAINING)
    archive = forms.FileField(
        required=False,
        label="Zip file",
        help_text="Images, with the metadata CSV inside or uploaded below.",
    )
    metadata_file = forms.FileField(
        required=False,
        label="Metadata CSV",
        help_text="Only if the CSV is not in the zip; its image paths are read from the zip's top.",
    )
    images_dir = forms.CharField(
        required=False,
        max_length=1000,
        label="Images folder on the server",
        help_text="An absolute path inside an allowed import root.",
    )
    metadata = forms.CharField(
        required=False,
        max_length=1000,
        label="Metadata CSV on the server",
        help_text="Absolute, or relative to the images folder.",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        roots = ", ".join(str(root) for root in import_roots())
        self.fields["images_dir"].help_text += f" Allowed roots: {roots}."

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        archive = data.get("archive")
        images_dir = (data.get("images_dir") or "").strip()
        if archive and images_dir:
            raise ValidationError("Give either a zip file or a server folder, not both.")
        if not archive and not images_dir:
            raise ValidationError("Give a zip file or a server folder to import from.")
        if archive and (data.get("metadata") or "").strip():
            self.add_error("metadata", "A server CSV path goes with a server folder, not a zip.")
        if images_dir and data.get("metadata_file"):
            self.add_error("metadata_file", "Upload a CSV only together with a zip.")
        if images_dir and not (data.get("metadata") or "").strip():
            self.add_error("metadata", "Give the metadata CSV's path on the server.")
        if self.errors:
            return data
        try:
            if all(data.get(key) for key in ("name", "format", "role")):
                validate_import_request(name=data["name"], format=data["format"], role=data["role"])
            if images_dir:
                check_server_paths(images_dir=images_dir, metadata=data["metadata"])
        except ValidationError as exc:
            self._add_service_errors(exc)
        return data

    def _add_service_errors(self, exc: ValidationError) -> None:
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for field, errors in exc.message_dict.items():
            self.add_error(field if field in self.fields else None, errors)

    def start(self, user: Any) -> Dataset | None:
        """Start the import in the background; None (with form errors) if the service refuses."""
        data = self.cleaned_data
        try:
            if data.get("archive"):
                return import_upload_in_background(
                    name=data["name"],
                    format=data["format"],
                    role=data["role"],
                    archive=data["archive"],
                    metadata_file=data.get("metadata_file"),
                    user=user,
                )
            return import_server_folder_in_background(
                name=data["name"],
                format=data["format"],
                role=data["role"],
                images_dir=data["images_dir"],
                metadata=data["metadata"],
                user=user,
            )
        except ValidationError as exc:
            self._add_service_errors(exc)
            return None


class TrainingSetForm(forms.ModelForm):
    """Admin form for training sets: a locked external test set is refused as a form error."""

    class Meta:
        model = TrainingSet
        fields = ["name", "description", "datasets", "fsts", "diagnoses", "origins", "splits"]

    def clean_datasets(self) -> Any:
        datasets = self.cleaned_data["datasets"]
        locked = [d.name for d in datasets if d.role == Dataset.Role.EXTERNAL_TEST]
        if locked:
            raise forms.ValidationError(f"{', '.join(locked)} is locked as an external test set")
        return datasets

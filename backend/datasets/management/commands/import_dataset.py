"""``python manage.py import_dataset``: import a dataset from its files, through the same code as the UI."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backend.datasets.formats import READERS
from backend.datasets.models import Dataset
from backend.datasets.services import import_now


class Command(BaseCommand):
    help = (
        "Import a dataset (metadata CSV + images folder); all or nothing. Exit status 1 on failure."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--format", required=True, choices=Dataset.Format.values, help="dataset format"
        )
        parser.add_argument("--metadata", required=True, help="the metadata CSV")
        parser.add_argument(
            "--images", required=True, help="the folder the CSV's image paths are relative to"
        )
        parser.add_argument("--name", required=True, help="a unique dataset name")
        parser.add_argument("--role", choices=Dataset.Role.values, default=Dataset.Role.TRAINING)
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["format"] not in READERS:
            raise CommandError(f"--format: the {options['format']} importer is not available yet")
        try:
            summary = import_now(
                name=options["name"],
                format=options["format"],
                metadata=options["metadata"],
                images_dir=options["images"],
                role=options["role"],
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"--{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from exc
        if options["json"]:
            self.stdout.write(json.dumps(summary.as_dict(), indent=2))
        else:
            self.stdout.write(
                f"{summary.name}: {summary.status}, {summary.imported} images imported"
            )
            for fst, number in summary.counts.get("fst", {}).items():
                self.stdout.write(f"  FST {fst}: {number}")
            for error in summary.rejected[:20]:
                self.stdout.write(f"  rejected: {error}")
        if summary.status != Dataset.Status.READY:
            raise CommandError(
                f"import of {summary.name!r} failed ({len(summary.rejected)} errors)"
            )

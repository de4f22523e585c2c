"""``python manage.py split_dataset NAME [--level patient] [--fractions 0.7,0.15,0.15] [--seed 0]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backend.datasets.models import Dataset
from backend.datasets.splitting import LEVELS, split_dataset
from validation.splits import SplitFractions


class Command(BaseCommand):
    help = (
        "Split a dataset into train/val/test by lesion (or patient), stratified by FST x diagnosis."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name")
        parser.add_argument("--level", choices=LEVELS, default="lesion")
        parser.add_argument("--fractions", default="0.7,0.15,0.15", help="train,val,test shares")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            dataset = Dataset.objects.get(name=options["name"])
        except Dataset.DoesNotExist:
            raise CommandError(f"name: no dataset named {options['name']!r}") from None
        try:
            parts = [float(p) for p in options["fractions"].split(",")]
            if len(parts) != 3:
                raise ValueError("fractions: give three shares, train,val,test")
            fractions = SplitFractions(*parts)
        except ValueError as exc:
            raise CommandError(f"--fractions: {exc}") from None
        try:
            counts = split_dataset(
                dataset, level=options["level"], fractions=fractions, seed=options["seed"]
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(json.dumps({"dataset": dataset.name, **counts}))

"""``python manage.py launch KIND --config FILE.json [--wait] [--json]``: the CLI face of launch_run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from backend.runs.models import Run
from backend.runs.services import launch_run
from backend.runs.views import progress_payload


class Command(BaseCommand):
    help = "Launch a run through the same code as the UI and the API; --wait follows it to the end."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("kind", choices=Run.Kind.values)
        parser.add_argument(
            "--config", help="JSON file with the kind's config (merged over --preset)"
        )
        parser.add_argument("--preset", help="a named preset of the kind")
        parser.add_argument(
            "--dataset", type=int, action="append", default=[], help="input dataset id (repeat)"
        )
        parser.add_argument(
            "--parent", type=int, action="append", default=[], help="parent run id (repeat)"
        )
        parser.add_argument(
            "--training-set",
            type=int,
            action="append",
            default=[],
            help="input training set id (repeat)",
        )
        parser.add_argument("--name", default="")
        parser.add_argument("--wait", action="store_true", help="wait for the run to finish")
        parser.add_argument(
            "--timeout", type=float, default=None, help="with --wait: give up after N seconds"
        )
        parser.add_argument("--json", action="store_true", help="print the run as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        config: dict[str, Any] = {}
        if options["config"]:
            path = Path(options["config"])
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise CommandError(f"--config: {path} not found") from None
            except json.JSONDecodeError as exc:
                raise CommandError(
                    f"--config: {path} is not valid JSON (line {exc.lineno}: {exc.msg})"
                ) from None
        try:
            run = launch_run(
                kind=options["kind"],
                config=config,
                preset=options["preset"],
                datasets=options["dataset"],
                parents=options["parent"],
                training_sets=options["training_set"],
                name=options["name"],
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from exc
        if not options["json"]:
            self.stdout.write(f"run #{run.pk} ({run.kind}) queued")
        if options["wait"]:
            run = self._wait(run, options["timeout"], quiet=options["json"])
        payload = {
            **progress_payload(run),
            "kind": run.kind,
            "config": run.config,
            "result": run.result,
        }
        payload.pop("log_tail", None)
        if options["json"]:
            self.stdout.write(json.dumps(payload, indent=2, default=str))
        else:
            self.stdout.write(f"run #{run.pk}: {run.status} {json.dumps(run.result, default=str)}")
        if options["wait"] and run.status != Run.Status.SUCCEEDED:
            raise CommandError(f"run #{run.pk} ended {run.status}: {run.error[-500:]}")

    def _wait(self, run: Run, timeout: float | None, quiet: bool) -> Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        last = -1
        while True:
            run.refresh_from_db()
            if run.is_finished:
                return run
            if not quiet and run.step != last:
                self.stderr.write(f"  {run.status} {run.step}/{run.total_steps}")
                last = run.step
            if deadline is not None and time.monotonic() > deadline:
                raise CommandError(f"run #{run.pk} still {run.status} after {timeout} s")
            time.sleep(1)

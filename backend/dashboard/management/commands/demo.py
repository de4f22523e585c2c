"""``python manage.py demo``: FairDerm end to end on the embedded default, then serve the site.

Steps: migrate; create the demo accounts and print their passwords; build the phantom
dataset; start a real Celery worker process (the broker is whatever CELERY_BROKER_URL says:
by default the filesystem broker under var/, no Redis needed) and the web server; then,
through the same services as the UI and the API, import the phantom set, train the
conditional diffusion model, generate an FST-balanced set, open a reader study, run the
downstream and quality evaluations and judge the set on the go/no-go dashboard (reader
figures from simulated readers, labelled so), printing progress. The site
stays up until Ctrl-C, which stops everything the command started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from backend.accounts.management.commands.create_demo_users import create_demo_users
from backend.dashboard.demo import demo_project, demo_project_lines
from backend.datasets.models import Dataset
from backend.datasets.services import import_in_background
from backend.datasets.splitting import split_dataset
from backend.reviews.demo import demo_study, demo_study_lines, simulated_study
from backend.runs.downstream_demo import run_downstream_demo
from backend.runs.execution import reap_stale_runs
from backend.runs.models import Run
from backend.runs.services import cancel_run, launch_run, resolve_config

PHANTOM_DATASET = "phantom-demo"


@dataclass(frozen=True)
class DemoProfile:
    """How big the demo is. ``full`` shows learned conditioning in minutes on 2 CPU cores."""

    phantom: dict[str, Any]
    train: dict[str, Any]
    generate: dict[str, Any]
    train_preset: str = "cpu-demo-32px"
    labels: dict[str, str] = field(default_factory=dict)


PROFILES: dict[str, DemoProfile] = {
    "full": DemoProfile(
        phantom={"count": 1600, "image_size": 32, "seed": 0},
        train={"train_steps": 500, "checkpoint_every": 100, "sample_every": 50},
        generate={
            "rule": "per_cell",
            "count": 10,
            "num_inference_steps": 25,
            "guidance_scale": 2.0,
            "batch_size": 48,
        },
    ),
    "quick": DemoProfile(
        phantom={"count": 96, "image_size": 32, "seed": 0},
        train={
            "train_steps": 6,
            "batch_size": 8,
            "block_out_channels": [16, 32],
            "checkpoint_every": 3,
            "sample_every": 3,
            "num_inference_steps": 3,
        },
        generate={
            "rule": "per_cell",
            "count": 1,
            "num_inference_steps": 3,
            "guidance_scale": 2.0,
            "batch_size": 24,
        },
    ),
}


class Child:
    """A subprocess in its own session (Ctrl-C reaches only the demo), logging to a file."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float) -> None:
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class Command(BaseCommand):
    help = (
        "Run FairDerm's main job chain on the embedded default and serve the site (Ctrl-C stops)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--profile", choices=sorted(PROFILES), default="full", help="demo size")
        parser.add_argument("--port", type=int, default=8000, help="web server port on 127.0.0.1")
        parser.add_argument("--no-serve", action="store_true", help="stop after the job chain")
        parser.add_argument(
            "--fresh", action="store_true", help="train and generate again even if done"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Ctrl-C and `kill` both end in the clean shutdown below, even where the parent shell
        # started us with SIGINT ignored (background jobs) or sends SIGTERM.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        self.children: list[Child] = []
        self.active_runs: list[Run] = []
        profile = PROFILES[options["profile"]]
        try:
            self._run(profile, options)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping (Ctrl-C)...")
        finally:
            self._shutdown()

    # --- steps -----------------------------------------------------------------------------

    def _run(self, profile: DemoProfile, options: dict[str, Any]) -> None:
        demo_dir = Path(settings.VAR_DIR) / "demo"
        self._step("Database")
        call_command("migrate", interactive=False, verbosity=0)
        reaped = reap_stale_runs()
        if reaped:
            self.stdout.write(f"  marked {reaped} run(s) of an earlier, interrupted demo as failed")

        self._step("Demo accounts (new passwords each time)")
        accounts = create_demo_users()
        for account in accounts:
            self.stdout.write(
                f"  {account.username:<12} {account.password:<14} {account.description}"
            )

        self._step("Phantom dataset")
        phantom_dir = self._build_phantom(demo_dir / "phantom", profile.phantom)

        self._step("Worker and web server")
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        worker = Child(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "-Q",
                "gpu,cpu",
                "--concurrency",
                "1",
                "--hostname",
                "demo@%h",
                "--loglevel",
                "INFO",
            ],  # fmt: skip
            demo_dir / "worker.log",
            env,
        )
        self.children.append(worker)
        self._wait_for_log(worker, " ready.", timeout=120)
        self.stdout.write(
            f"  worker ready (broker {settings.CELERY_BROKER_URL.split('://')[0]}; log {worker.log_path})"
        )
        base_url = f"http://127.0.0.1:{options['port']}"
        if not options["no_serve"]:
            if not _port_free(options["port"]):
                raise CommandError(f"port {options['port']} is in use; pass --port to pick another")
            web = Child(
                "web",
                [
                    sys.executable,
                    "manage.py",
                    "runserver",
                    f"127.0.0.1:{options['port']}",
                    "--noreload",
                ],
                demo_dir / "web.log",
                env,
            )
            self.children.append(web)
            self._wait_for_port(web, options["port"], timeout=60)
            self.stdout.write(
                f"  site up at {base_url}/  (log in as ml-engineer or lead to watch the runs)"
            )

        self._step("Import and split the phantom dataset (cpu queue)")
        dataset = self._import(phantom_dir)

        self._step("Train the FST x diagnosis conditional diffusion model (gpu queue; CPU here)")
        train = self._reuse_or_launch(
            Run.Kind.TRAIN_CONDITIONAL,
            preset=profile.train_preset,
            config=profile.train,
            datasets=[dataset],
            fresh=options["fresh"],
        )
        self.stdout.write(f"  run #{train.pk}: {base_url}{train.get_absolute_url()}")
        train = self._wait_for_run(train)

        self._step("Generate an FST-balanced synthetic set")
        generate = self._reuse_or_launch(
            Run.Kind.GENERATE, config=profile.generate, parents=[train], fresh=options["fresh"]
        )
        self.stdout.write(f"  run #{generate.pk}: {base_url}{generate.get_absolute_url()}")
        generate = self._wait_for_run(generate)
        synthetic = generate.generated_datasets.order_by("-created_at").first()
        if synthetic is None:
            raise CommandError(f"run #{generate.pk} finished without a synthetic dataset")

        self._step("Blinded reader study (real test split vs the synthetic set)")
        study = demo_study(dataset, synthetic, [a.username for a in accounts])
        self.stdout.write("\n".join(demo_study_lines(study, accounts, base_url)))

        self._step("Downstream: baseline vs augmented classifiers on a locked phantom test set")
        downstream = run_downstream_demo(
            self,
            options["profile"],
            dataset,
            generate,
            demo_dir,
            fresh=options["fresh"],
            base_url=base_url,
        )

        self._step("Evaluate the synthetic set against the phantom test split (gpu queue)")
        evaluation = self._evaluate(demo_dir, dataset, synthetic, options["fresh"])

        self._step("Go/no-go dashboard (reader figures from SIMULATED readers, labelled so)")
        simulated = simulated_study(dataset, synthetic)
        project = demo_project(synthetic, simulated)
        self.stdout.write("\n".join(demo_project_lines(project, base_url)))

        self._step("Done")
        counts = synthetic.counts.get("fst", {})
        self.stdout.write(
            f"  {synthetic.image_count} synthetic images, per FST: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        )
        self.stdout.write(f"  FST x diagnosis grid: {base_url}{synthetic.get_absolute_url()}")
        self.stdout.write(f"  training run:         {base_url}{train.get_absolute_url()}")
        self.stdout.write(f"  downstream results:   {base_url}{downstream.get_absolute_url()}")
        self.stdout.write(f"  quality metrics:      {base_url}{evaluation.get_absolute_url()}")
        self.stdout.write(f"  go/no-go dashboard:   {base_url}{project.get_absolute_url()}")
        self.stdout.write(f"  admin:                {base_url}/admin/   API: {base_url}/api/docs/")
        if options["no_serve"]:
            return
        self.stdout.write(self.style.SUCCESS(f"\nServing {base_url}/ — press Ctrl-C to stop."))
        while all(child.alive() for child in self.children):
            time.sleep(1)
        dead = [c.name for c in self.children if not c.alive()]
        raise CommandError(f"{', '.join(dead)} stopped unexpectedly; see the logs under {demo_dir}")

    def _evaluate(self, demo_dir: Path, real: Dataset, synthetic: Dataset, fresh: bool) -> Run:
        from backend.runs.evaluation import demo_evaluation_config

        config, notes = demo_evaluation_config(demo_dir)
        for note in notes:
            self.stdout.write(f"  {note}")
        run = self._reuse_or_launch(
            Run.Kind.EVALUATE, config=config, datasets=[real, synthetic], fresh=fresh
        )
        run = self._wait_for_run(run)
        for row in run.result.get("summary", []):
            value = row["value"]
            shown = f"{value:.4g}" if isinstance(value, float) else value
            self.stdout.write(f"  {row['metric']}: {shown} [{row['n']}; {row['weights']}]")
        return run

    def _build_phantom(self, folder: Path, config_values: dict[str, Any]) -> Path:
        from generation.phantom import PhantomConfig, build_phantom_dataset

        config = PhantomConfig(**config_values)
        marker = folder / "phantom_config.json"
        if marker.exists() and (folder / "metadata.csv").exists():
            import json

            stored = json.loads(marker.read_text())
            stored.pop("phantom_version", None)
            if PhantomConfig.from_dict(stored) == config:
                self.stdout.write(f"  reusing {folder}")
                return folder
        started = time.monotonic()
        summary = build_phantom_dataset(config, folder)
        self.stdout.write(f"  {summary.line()} in {time.monotonic() - started:.1f} s -> {folder}")
        return folder

    def import_phantom(
        self, name: str, folder: Path, role: str = Dataset.Role.TRAINING
    ) -> tuple[Dataset, bool]:
        """Import a phantom folder as dataset ``name`` (reused when unchanged); wait for it.

        Returns the dataset and whether it was imported now (False: reused).
        """
        existing = Dataset.objects.filter(name=name).first()
        if (
            existing is not None
            and existing.status == Dataset.Status.READY
            and existing.source == str(folder / "metadata.csv")
        ):
            self.stdout.write(
                f"  reusing dataset {existing.name!r} ({existing.image_count} images)"
            )
            return existing, False
        if existing is not None:
            existing.delete()
        dataset = import_in_background(
            name=name,
            format="phantom",
            metadata=folder / "metadata.csv",
            images_dir=folder,
            role=role,
        )
        while True:
            self._check_children()
            dataset.refresh_from_db()
            if dataset.status != Dataset.Status.IMPORTING:
                break
            time.sleep(0.5)
        if dataset.status != Dataset.Status.READY:
            raise CommandError(f"import of {name} failed: {dataset.errors[:3]}")
        return dataset, True

    def _import(self, phantom_dir: Path) -> Dataset:
        dataset, imported = self.import_phantom(PHANTOM_DATASET, phantom_dir)
        if not imported:
            return dataset
        counts = ", ".join(f"{k}: {v}" for k, v in dataset.counts["fst"].items())
        self.stdout.write(f"  {dataset.image_count} images; per FST {counts}")
        splits = split_dataset(dataset, level="patient", seed=0)
        self.stdout.write(
            "  split by patient, stratified by FST x diagnosis: "
            + ", ".join(f"{name} {n}" for name, n in splits.items())
            + " (training reads the train split only)"
        )
        return dataset

    def _reuse_or_launch(self, kind: str, *, fresh: bool, **launch: Any) -> Run:
        config = resolve_config(kind, launch.get("config"), launch.get("preset")).to_dict()
        if not fresh:
            for run in Run.objects.filter(kind=kind, status=Run.Status.SUCCEEDED, config=config):
                same_inputs = set(run.datasets.all()) == set(launch.get("datasets", [])) and set(
                    run.parents.all()
                ) == set(launch.get("parents", []))
                if same_inputs:
                    self.stdout.write(
                        f"  reusing run #{run.pk} (same config and inputs; --fresh to redo)"
                    )
                    return run
        run = launch_run(kind=kind, name="demo", **launch)
        self.active_runs.append(run)
        return run

    def _wait_for_run(self, run: Run) -> Run:
        """Poll the run's row, printing a progress line every 10% or 30 s, until it finishes."""
        last_step, last_time = -1, 0.0
        while True:
            self._check_children()
            run.refresh_from_db()
            if run.is_finished:
                break
            now = time.monotonic()
            advanced = run.total_steps and run.step - last_step >= max(1, run.total_steps // 10)
            if run.total_steps and run.step != last_step and (advanced or now - last_time >= 30):
                loss = f", loss {run.loss_history[-1][1]:.4f}" if run.loss_history else ""
                eta = f", about {run.eta_seconds / 60:.1f} min left" if run.eta_seconds else ""
                self.stdout.write(f"  {run.step}/{run.total_steps}{loss}{eta}")
                last_step, last_time = run.step, now
            time.sleep(1)
        if run.status != Run.Status.SUCCEEDED:
            raise CommandError(f"run #{run.pk} ended {run.status}: {run.error[-1500:]}")
        self.stdout.write(f"  run #{run.pk} succeeded: {_short(run.result)}")
        return run

    # --- plumbing --------------------------------------------------------------------------

    def _step(self, title: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"\n== {title}"))

    def _check_children(self) -> None:
        for child in self.children:
            if not child.alive():
                tail = child.log_path.read_text(errors="replace")[-3000:]
                raise CommandError(
                    f"the {child.name} process exited ({child.process.returncode}):\n{tail}"
                )

    def _wait_for_log(self, child: Child, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_children()
            if needle in child.log_path.read_text(errors="replace"):
                return
            time.sleep(0.3)
        raise CommandError(
            f"the {child.name} did not start within {timeout:.0f} s; see {child.log_path}"
        )

    def _wait_for_port(self, child: Child, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_children()
            if not _port_free(port):
                return
            time.sleep(0.3)
        raise CommandError(
            f"the {child.name} server did not listen within {timeout:.0f} s; see {child.log_path}"
        )

    def _shutdown(self) -> None:
        for run in self.active_runs:
            run.refresh_from_db()
            if not run.is_finished:
                cancel_run(run)
        for child in reversed(self.children):
            child.stop(grace=30 if child.name == "worker" else 10)
        if self.children:
            self.stdout.write("Stopped the worker and the web server.")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _short(result: dict[str, Any]) -> str:
    keys = ("final_step", "final_loss", "images", "dataset_id", "seconds")
    return ", ".join(f"{k}={result[k]}" for k in keys if k in result) or "ok"

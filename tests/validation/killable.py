"""A process to kill mid-write: FairDerm's own image generation or training with checkpoints.

``python -m tests.validation.killable`` imports torch and the generation code once, then
serves commands read from stdin, one per line, ``<command> <mode> <folder>``, where ``mode``
is ``images`` (``generate_images`` of a tiny conditional model's samples, a long plan, each
batch written before the next is made), ``images-threaded`` (the same with the PNG writer
threads that generate runs use by default) or ``checkpoints`` (``train_conditional`` of a
tiny model, a checkpoint every step):

``fork``
    Fork a child that runs the mode's real write path into ``folder`` and would not end on
    its own for a long while; print its pid. The test SIGKILLs that pid; this process reaps
    the child and prints ``exit <-signal or status>``.
``finish``
    Run the write path here, uninterrupted, for a few more batches or training steps, and
    print a JSON summary.

Forking from a process that has already imported torch makes each killed writer cost
milliseconds instead of the seconds that starting an interpreter with torch takes.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from generation.conditional import (
    ConditionalLesionPipeline,
    ConditionalPipelineSampler,
    TrainingCallback,
    build_unet,
    make_noise_scheduler,
    train_conditional,
)
from generation.forking import private_progress_lock
from generation.generate import generate_images
from generation.plans import GenerationConfig, GenerationItem, balanced_plan
from tests.generation.test_conditional_toydata import TOY_DIAGNOSES, make_toy_records, tiny_config

#: Images per cell of the plan (12 cells): far more than the writers make before they are
#: killed. ``finish`` makes only ``FINISH_BATCHES`` more batches.
PLAN_PER_CELL = 300
FINISH_BATCHES = 2
BATCH_SIZE = 8
IMAGE_SIZE = 16
#: Writer threads of the threaded mode: what generate runs use unless configured otherwise.
WRITER_THREADS = next(f.default for f in fields(GenerationConfig) if f.name == "writer_threads")
#: Images that may be whole on disk but not yet in SHA256SUMS when a writer is killed: its
#: last batch; with threads, also the two batches the writer may still hold.
UNLISTED_AT_MOST = {"images": BATCH_SIZE, "images-threaded": 3 * BATCH_SIZE}
#: Training steps asked of a child (it is killed long before) and run by ``finish``.
TRAIN_STEPS = 100_000
FINISH_STEPS = 3


def image_plan() -> list[GenerationItem]:
    return balanced_plan(range(1, 7), list(TOY_DIAGNOSES), PLAN_PER_CELL, base_seed=5)


class StopAfter(TrainingCallback):
    def __init__(self, steps: int) -> None:
        self.left = steps

    def on_step(self, step: int, total_steps: int, loss: float, info: dict[str, Any]) -> None:
        self.left -= 1

    def should_stop(self) -> bool:
        return self.left <= 0


class Images:
    def __init__(self, folder: Path, writer_threads: int = 0) -> None:
        self.folder = folder
        self.writer_threads = writer_threads
        config = tiny_config(image_size=IMAGE_SIZE, seed=3)
        pipeline = ConditionalLesionPipeline(
            build_unet(config).eval(),
            make_noise_scheduler(config),
            diagnoses=list(config.diagnoses),
        )
        self.sampler = ConditionalPipelineSampler(
            pipeline, guidance_scale=1.0, num_inference_steps=1
        )
        self.plan = image_plan()

    def write(self, batches: int | None = None) -> dict[str, Any]:
        done = [0]

        def should_stop() -> bool:
            done[0] += 1
            return batches is not None and done[0] > batches

        images = generate_images(
            self.sampler,
            self.plan,
            self.folder,
            batch_size=BATCH_SIZE,
            provenance=self.sampler.provenance(),
            should_stop=should_stop,
            writer_threads=self.writer_threads,
        )
        return {
            "images": len(images),
            "generated": sum(image.generated for image in images),
            "sha256": {image.path.name: image.sha256 for image in images},
        }

    def run_child(self) -> None:
        self.write()

    def finish(self) -> dict[str, Any]:
        return self.write(FINISH_BATCHES)


class Checkpoints:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.records = make_toy_records(folder.parent / "toy-records", per_cell=1, size=16)

    def train(self, steps: int, callbacks: TrainingCallback | None) -> Any:
        config = tiny_config(train_steps=steps, checkpoint_every=1, keep_checkpoints=2)
        return train_conditional(config, self.records, self.folder, callbacks=callbacks)

    def run_child(self) -> None:
        self.train(TRAIN_STEPS, None)

    def finish(self) -> dict[str, Any]:
        result = self.train(TRAIN_STEPS, StopAfter(FINISH_STEPS))
        return {"resumed_from": result.resumed_from, "final_step": result.final_step}


def make_writer(mode: str, folder: Path) -> Images | Checkpoints:
    if mode == "images":
        return Images(folder)
    if mode == "images-threaded":
        return Images(folder, WRITER_THREADS)
    if mode == "checkpoints":
        return Checkpoints(folder)
    raise ValueError(f"mode: {mode!r} is not images, images-threaded or checkpoints")


def main() -> None:
    torch.set_num_threads(1)
    writers: dict[tuple[str, str], Images | Checkpoints] = {}
    print("ready", flush=True)
    for line in sys.stdin:
        command, mode, folder = line.split()
        if (mode, folder) not in writers:
            writers[mode, folder] = make_writer(mode, Path(folder))
        writer = writers[mode, folder]
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    # Killed mid-bar, the child must not take this process's tqdm lock with it.
                    private_progress_lock()
                    writer.run_child()
                except BaseException:
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            print(pid, flush=True)
            _, status = os.waitpid(pid, 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            print(f"exit {code}", flush=True)
        elif command == "finish":
            print(json.dumps(writer.finish()), flush=True)


if __name__ == "__main__":
    main()

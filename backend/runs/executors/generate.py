"""Executor of ``generate`` runs: a trained model in, a synthetic Dataset with provenance out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count

from backend import storage
from backend.datasets.models import Dataset, Image, Origin
from backend.runs.execution import RunContext
from backend.runs.executors.common import code_version, input_images, training_images
from backend.runs.models import Run
from generation.conditional import ConditionalPipelineSampler
from generation.generate import GeneratedImage, generate_images, package_versions
from generation.plans import GenerationConfig, GenerationItem
from generation.tone_gate import apply_replacements, load_replacements, tone_gate
from validation.files import atomic_write_text
from validation.vocabulary import DIAGNOSES


def reference_counts(run: Run, model_run: Run) -> dict[tuple[int, str], int]:
    """Real images per (FST, diagnosis) of the reference datasets.

    The reference is the generate run's own datasets and training sets when it names any,
    else those its model was trained on (the lineage).
    """
    source = run if run.datasets.exists() or run.training_sets.exists() else model_run
    rows = (
        input_images(source)
        .filter(origin=Origin.REAL, fst__isnull=False)
        .values_list("fst", "diagnosis")
        .annotate(n=Count("id"))
    )
    return {(fst, diagnosis): n for fst, diagnosis, n in rows}


def load_or_make_plan(
    path: Path,
    config: GenerationConfig,
    diagnoses: list[str],
    real: dict[tuple[int, str], int] | None,
) -> list[GenerationItem]:
    """The run's plan, fixed at its first attempt (plan.json) so a retry makes the same images.

    The plan is kept in the artifacts storage, so shards and retries on other machines read
    the same one.
    """
    mirror = storage.artifacts()
    if mirror.fetch_if_stored(mirror.name_of(path)) is not None:
        return [GenerationItem(**item) for item in json.loads(path.read_text())["items"]]
    items = config.plan(diagnoses, real)
    counts = {f"{fst}/{dx}": n for (fst, dx), n in config.counts(diagnoses, real).items()}
    atomic_write_text(path, json.dumps({"counts": counts, "items": [i.to_dict() for i in items]}))
    mirror.publish(path)
    return items


class StoredImages:
    """The run's generated PNGs in the media storage (no-ops when the storage is local).

    Before generating, the images other machines (shards, an earlier attempt) already made
    are fetched, so ``generate_images`` skips them; after every batch, the new ones are
    published. Images the tone gate replaced are always fetched afresh: a cached copy may be
    the one it replaced.
    """

    def __init__(self, output_dir: Path, replaced: set[int]):
        self.mirror = storage.media()
        self.output_dir = output_dir
        self.replaced = replaced
        self.stored: set[str] = set()

    def fetch(self, items: list[GenerationItem]) -> None:
        if not self.mirror.remote:
            return
        wanted = {item.index for item in items}
        stored = list(self.mirror.walk(self.mirror.name_of(self.output_dir)))
        self.stored = {PurePosixPath(name).name for name in stored}
        missing: list[tuple[str, str | None]] = []
        for name in stored:
            stem = PurePosixPath(name).stem
            if not stem.isdigit() or int(stem) not in wanted:
                continue
            local = self.mirror.path(name)
            if int(stem) in self.replaced:
                local.unlink(missing_ok=True)
            if not local.is_file():
                missing.append((name, None))
        self.mirror.fetch_many(missing)

    def publish(self, images: list[GeneratedImage], *, force: bool = False) -> None:
        if not self.mirror.remote:
            return
        paths = [
            image.path
            for image in images
            if force or image.generated or image.path.name not in self.stored
        ]
        self.mirror.publish_many(paths)
        self.stored.update(path.name for path in paths)


@dataclass
class GenerationJob:
    """What every worker of a generate run needs, rebuilt identically on each of them.

    The plan and the shared provenance are fixed by the first worker that prepares the run
    (``plan.json``, ``provenance.json`` in the run folder), so shards on other machines and
    retried tasks write exactly the same images.
    """

    config: GenerationConfig
    model_run: Run
    sampler: Any  # the generate_images protocol: a conditional or Stable Diffusion sampler
    plan: list[GenerationItem]
    provenance: dict[str, Any]
    output_dir: Path
    replacements_path: Path
    images: StoredImages


#: The kinds of run whose model a generate run can sample from.
MODEL_KINDS = (Run.Kind.TRAIN_CONDITIONAL, Run.Kind.TRAIN_LORA)


def load_sampler(
    run: Run, parent: Run, config: GenerationConfig, device: str
) -> tuple[Any, list[str]]:
    """The sampler of the parent's model and the diagnoses it was trained on."""
    model = parent.artifacts.get(name="model")
    if parent.kind == Run.Kind.TRAIN_CONDITIONAL:
        if config.mode != "txt2img":
            raise ValueError(
                f"mode: {config.mode} needs a Stable Diffusion (train-lora) model; "
                f"run #{parent.pk} is {parent.kind}"
            )
        if config.uses_fast_path:
            plain = GenerationConfig()
            name = next(n for n in config.FAST_FIELDS if getattr(config, n) != getattr(plain, n))
            raise ValueError(
                f"{name}: the fast-path settings need a Stable Diffusion (train-lora) model; "
                f"run #{parent.pk} is {parent.kind}"
            )
        sampler = ConditionalPipelineSampler.from_pretrained(
            model.fetch(),
            device=device,
            guidance_scale=config.guidance_scale,
            num_inference_steps=config.num_inference_steps,
            sampler=config.sampler,
        )
        return sampler, list(sampler.pipeline.codec.diagnoses)
    from generation.sd_finetune.config import LoraTrainingConfig
    from generation.sd_finetune.sampling import SDSampler

    lora = LoraTrainingConfig.from_dict(parent.config)
    sources: dict[str, list[Path]] = {}
    if config.mode == "img2img":
        source_run = run if run.datasets.exists() or run.training_sets.exists() else parent
        images = training_images(source_run, fsts=config.source_fsts, diagnoses=lora.diagnoses)
        paths = storage.media().fetch_many((i.file, i.sha256 or None) for i in images)
        for image, path in zip(images, paths, strict=True):
            sources.setdefault(image.diagnosis, []).append(path)
    sampler = SDSampler.from_lora(
        lora.base_model,
        model.fetch(),
        device=device,
        scheduler=config.sampler,
        guidance_scale=config.guidance_scale,
        num_inference_steps=config.num_inference_steps,
        mode=config.mode,
        strength=config.strength,
        sources=sources,
        # Compiled kernels kept between worker processes (inductor's on-disk cache).
        fast=config.fast_path(str(Path(settings.VAR_DIR) / "cache" / "torchinductor")),
    )
    return sampler, list(lora.diagnoses)


def prepare(run: Run, config: GenerationConfig, device: str) -> GenerationJob:
    parent = run.parents.get(kind__in=MODEL_KINDS)
    model = parent.artifacts.get(name="model")
    sampler, diagnoses = load_sampler(run, parent, config, device)
    real = reference_counts(run, parent) if config.needs_real_counts else None
    plan = load_or_make_plan(run.workdir / "plan.json", config, diagnoses, real)
    mirror = storage.artifacts()
    replacements_path = run.workdir / "tone_replacements.json"
    mirror.fetch_latest(mirror.name_of(replacements_path))
    replacements = load_replacements(replacements_path)
    plan = apply_replacements(plan, replacements)
    provenance_path = run.workdir / "provenance.json"
    if mirror.fetch_if_stored(mirror.name_of(provenance_path)) is not None:
        provenance = json.loads(provenance_path.read_text())
    else:
        provenance = {
            **sampler.provenance(),
            "run_id": run.pk,
            "model_run_id": parent.pk,
            "model_artifact_sha256": model.sha256,
            "generation_config": config.to_dict(),
            "code_commit": code_version(),
            "packages": package_versions(),
            "device": device,
        }
        atomic_write_text(provenance_path, json.dumps(provenance, sort_keys=True))
        mirror.publish(provenance_path)
    # Generated straight into MEDIA_ROOT: these archival PNGs (with provenance) are the
    # dataset's files. The folder is per run, so retried tasks and shards resume into it.
    output_dir = Path(settings.MEDIA_ROOT) / "generated" / f"run-{run.folder_name}"
    stored = StoredImages(output_dir, set(replacements))
    return GenerationJob(
        config, parent, sampler, plan, provenance, output_dir, replacements_path, stored
    )


def shard_items(plan: list[GenerationItem], shards: int, index: int) -> list[GenerationItem]:
    """The items of shard ``index``: every ``shards``-th image, so each shard is balanced too."""
    return [item for item in plan if item.index % shards == index]


def execute(ctx: RunContext, config: GenerationConfig) -> dict[str, Any]:
    job = prepare(ctx.run, config, ctx.device)
    if not job.plan:
        ctx.log(f"nothing to generate: the {config.rule} target is already met by the real data")
        return {"images": 0, "rule": config.rule, "target_already_met": True}
    if config.shards > 1:
        from backend.runs.sharding import coordinate

        coordinate(ctx, len(job.plan), config.shards)  # raises HandedOff until every shard is done
    ctx.log(
        f"generating {len(job.plan)} images ({config.rule}, count {config.count}) into {job.output_dir}"
    )

    def on_progress(done: int, total: int, new: list[GeneratedImage]) -> None:
        job.images.publish(new)
        ctx.progress(done, total)

    job.images.fetch(job.plan)  # what shards and earlier attempts made, wherever they ran
    images = generate_images(
        job.sampler,
        job.plan,
        job.output_dir,
        batch_size=config.batch_size,
        provenance=job.provenance,
        on_progress=on_progress,
        should_stop=ctx.should_stop,
        writer_threads=config.writer_threads,
    )
    if len(images) < len(job.plan):
        return {"stopped": True, "images": len(images), "planned": len(job.plan)}
    return finalize(ctx, job, images)


def generate_shard(
    run: Run, shard_index: int, device: str, *, on_progress: Any, should_stop: Any
) -> int:
    """Generate shard ``shard_index`` of a generate run; return how many of its images exist."""
    config = GenerationConfig.from_dict(run.config)
    job = prepare(run, config, device)
    items = shard_items(job.plan, config.shards, shard_index)

    def progress(done: int, total: int, new: list[GeneratedImage]) -> None:
        job.images.publish(new)
        on_progress(done, total)

    job.images.fetch(items)
    images = generate_images(
        job.sampler,
        items,
        job.output_dir,
        batch_size=config.batch_size,
        provenance=job.provenance,
        on_progress=progress,
        should_stop=should_stop,
        writer_threads=config.writer_threads,
    )
    return len(images)


def finalize(ctx: RunContext, job: GenerationJob, images: list[GeneratedImage]) -> dict[str, Any]:
    """The tone-fidelity gate over the whole set, then the synthetic dataset in one transaction."""
    config = job.config
    ctx.log("tone-fidelity gate: estimating each image's skin type from its pixels")
    gate = tone_gate(
        job.sampler,
        images,
        job.output_dir,
        base_seed=config.seed,
        provenance=job.provenance,
        batch_size=config.batch_size,
        tolerance=config.tone_tolerance,
        retries=config.tone_retries,
        replacements_path=job.replacements_path,
        should_stop=ctx.should_stop,
    )
    # Replaced images first, then the record of their seeds: a retry elsewhere that finds
    # the new record also finds the new images (and an image newer than the record is
    # regenerated, see generation.generate).
    replaced = set(load_replacements(job.replacements_path))
    job.images.publish([image for image in gate.images if image.index in replaced], force=True)
    if job.replacements_path.exists():
        storage.artifacts().publish(job.replacements_path)
    overall = gate.fidelity.overall
    ctx.log(
        f"tone fidelity: {overall.exact_rate or 0:.0%} exact, {overall.within_one_rate or 0:.0%} "
        f"within one type ({gate.replaced} regenerated, {gate.still_off} still off)"
    )
    if ctx.should_stop():
        return {"stopped": True, "images": len(images), "planned": len(job.plan)}
    dataset = _store(ctx.run, config, gate.images, gate.estimates)
    summary: dict[str, Any] = {}
    if config.mode == "img2img":
        summary["lesion_preservation"] = lesion_summary(gate.images)
    return {
        **summary,
        "images": len(gate.images),
        "dataset_id": dataset.pk,
        "dataset": dataset.name,
        "rule": config.rule,
        "shards": config.shards,
        "per_fst": dataset.counts.get("fst", {}),
        "tone": gate.to_dict(),
    }


def lesion_summary(images: list[GeneratedImage]) -> dict[str, Any]:
    """Mean lesion preservation of img2img images, overall and per FST, with its definition."""
    from validation.lesion import LesionPreservation

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    groups: dict[str, list[dict[str, Any]]] = {}
    for image in images:
        found = image.provenance.get("lesion_preservation") or {}
        groups.setdefault("overall", []).append(found)
        groups.setdefault(str(image.fst), []).append(found)
    table = {}
    for key, rows in groups.items():
        kept = [r for r in rows if r.get("found")]
        table[key] = {
            "n": len(rows),
            "lesion_found": len(kept),
            "ssim": mean([r["ssim"] for r in kept]),
            "mask_iou": mean([r["mask_iou"] for r in kept]),
        }
    return {"definition": LesionPreservation.DEFINITION, **table}


def _store(
    run: Run,
    config: GenerationConfig,
    images: list[GeneratedImage],
    estimates: dict[int, dict[str, Any]],
) -> Dataset:
    """Create (or complete, on a retry) the run's synthetic dataset in one transaction."""
    media = Path(settings.MEDIA_ROOT)
    name = config.dataset_name or f"synthetic-run-{run.pk}"
    with transaction.atomic():
        dataset, _ = Dataset.objects.get_or_create(
            generated_by=run,
            defaults={
                "name": name,
                "format": Dataset.Format.GENERATED,
                "origin": Origin.SYNTHETIC,
                "status": Dataset.Status.IMPORTING,
                "source": f"run #{run.pk}",
                "created_by": run.created_by,
            },
        )
        rows = []
        for image in images:
            with open(image.path, "rb") as handle:
                width, height = _png_size(handle.read(24))
            rows.append(
                Image(
                    dataset=dataset,
                    image_id=f"{image.index:06d}",
                    sha256=image.sha256,
                    file=str(image.path.relative_to(media)),
                    width=width,
                    height=height,
                    diagnosis=image.diagnosis,
                    diagnosis_original=image.diagnosis,
                    malignant=DIAGNOSES[image.diagnosis].malignant,
                    fst=image.fst,
                    fst_source=Image.FstSource.REQUESTED,
                    ita=estimates[image.index]["ita"],
                    ground_truth={
                        "estimated_fst": estimates[image.index]["fst"],
                        "ita_reliable": estimates[image.index]["reliable"],
                    },
                    origin=Origin.SYNTHETIC,
                    provenance=image.provenance,
                )
            )
        Image.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
        dataset.status = Dataset.Status.READY
        dataset.refresh_counts(save=False)
        dataset.save(update_fields=["status", "counts", "image_count", "updated_at"])
    return dataset


def _png_size(header: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first 24 bytes)."""
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("image: not a PNG file")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")

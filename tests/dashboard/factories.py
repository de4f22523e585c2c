"""Go/no-go test worlds: a synthetic set with its evaluate run, downstream run and closed
reader study, each result shaped as the real runs store it, so the dashboard reads them the
way it reads production rows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import factory
from django.conf import settings

from backend.dashboard.models import Project
from backend.datasets.models import Dataset
from backend.reviews import services
from backend.reviews.models import Study
from backend.runs.models import Artifact, Run
from tests.reviews.factories import make_study
from tests.runs.factories import RunFactory

OFFICIAL = {"status": "official", "label": "official weights (sha256 verified)"}
STAND_IN = {"status": "non-official", "label": "NON-OFFICIAL weights"}


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda i: f"project {i}")


def evaluation_result(
    *,
    official: bool = True,
    fid: float = 12.0,
    n: int = 5000,
    dims: int = 2048,
    lpips: float = 0.05,
    inception: float = 6.0,
    tone: float = 0.95,
    flagged: int = 0,
    ita_real: list[float] | None = None,
    ita_synthetic: list[float] | None = None,
) -> dict[str, Any]:
    """An evaluate run's ``result`` with the keys ``validation.metrics`` writes."""
    weights = OFFICIAL if official else STAND_IN
    return {
        "summary": [],
        "weights": {"fid": weights, "lpips": weights},
        "fid": {"dims": dims, "overall": {"value": fid, "n_real": n, "n_synthetic": n}},
        "lpips": {
            "fidelity": {"overall": {"mean": lpips, "n": n}},
            "diversity": {"alarms": []},
        },
        "is": {"synthetic": {"mean": inception, "std": 0.1, "n": n}},
        "tone": {
            "overall": {
                "n": n,
                "n_estimated": n,
                "within_one_rate": tone,
                "exact_rate": tone - 0.2,
            },
            "ita": {"real": ita_real or [], "synthetic": ita_synthetic or []},
        },
        "memorization": {"n_flagged": flagged, "flagged": [], "n_synthetic": n, "n_train": n},
    }


def downstream_results(
    *,
    v_vi: tuple[float, float, float] = (0.15, 0.11, 0.20),
    i_iii: tuple[float, float, float] = (-0.01, -0.015, 0.0),
    all_: tuple[float, float, float] = (0.03, 0.01, 0.05),
    literature: bool = True,
) -> dict[str, Any]:
    """A downstream ``results`` document (the parts the dashboard reads)."""

    def gate(values: tuple[float, float, float], meets: bool) -> dict[str, Any]:
        value, low, high = values
        return {
            "available": True,
            "relative": value,
            "relative_ci": [low, high],
            "absolute": value * 0.7,
            "absolute_ci": [low * 0.7, high * 0.7],
            "baseline_auroc": 0.7,
            "augmented_auroc": 0.7 * (1 + value),
            "met": meets,
            "met_with_confidence": meets,
        }

    groups = {
        g: {"auroc": 0.7, "auroc_ci": [0.6, 0.8], "n": 400} for g in ("I-III", "IV", "V-VI", "all")
    }
    augmented = {
        g: {"auroc": 0.75, "auroc_ci": [0.65, 0.85], "n": 400}
        for g in ("I-III", "IV", "V-VI", "all")
    }
    return {
        "primary": "augmented",
        "arms": {
            "baseline": {"groups": groups, "roc": {}},
            "augmented": {"groups": augmented, "roc": {}},
        },
        "differences": {
            "augmented": {"all": {"relative": all_[0], "relative_ci": [all_[1], all_[2]]}}
        },
        "go_no_go": {
            "fst_v_vi_improvement": gate(v_vi, v_vi[0] >= 0.10),
            "fst_i_iii_change": gate(i_iii, i_iii[0] > -0.02),
        },
        "evidence": {
            "counts_toward_literature_target": literature,
            "reasons": [] if literature else ["the test set is phantom data, not real patients"],
        },
    }


def results_artifact(run: Run, document: dict[str, Any]) -> Artifact:
    data = json.dumps(document).encode()
    relative = f"runs/{run.pk}/results.json"
    path = Path(settings.ARTIFACTS_ROOT) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Artifact.objects.create(
        run=run,
        name="results",
        kind=Artifact.Kind.REPORT,
        path=relative,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def answer_all(study: Study, readers: list[Any], *, judgement: str, realism: int) -> None:
    """Every reader answers every case the same way, submits; then the study closes."""
    for assignment in study.assignments.filter(reader__in=readers):
        for slot in assignment.slots.all():
            services.save_answer(
                slot,
                {
                    "judgement": judgement,
                    "confidence": 3,
                    "realism": realism,
                    "asymmetry_realistic": True,
                    "border_realistic": True,
                    "colour_realistic": True,
                    "diameter_realistic": True,
                },
                reading_ms=3000,
            )
        services.submit_assignment(assignment)
    services.close_study(study)


@dataclass
class World:
    project: Project
    synthetic: Dataset
    real: Dataset
    evaluation: Run | None
    downstream: Run | None
    study: Study | None


def make_world(
    readers: list[Any],
    *,
    evaluation: dict[str, Any] | None = None,
    downstream: dict[str, Any] | None = None,
    judgement: str | None = "real",
    realism: int = 6,
    set_size: int = 60_000,
    targets: dict[str, Any] | None = None,
    name: str = "world",
    real_format: str = Dataset.Format.HAM10000,
) -> World:
    """A project whose every target has evidence (pass by default), or less when asked.

    The reader study is 4 + 4 cases, so the project lowers the reader targets' fewest
    observations to 4 (a project setting, as a lead would for a pilot).
    """
    study = make_study(readers, n=4, name=name)
    if judgement is not None:
        answer_all(study, readers, judgement=judgement, realism=realism)
    synthetic, real = study.synthetic_dataset, study.real_dataset
    Dataset.objects.filter(pk=synthetic.pk).update(image_count=set_size)
    # Patient images by format (the factory's default is the phantom set, which never counts).
    Dataset.objects.filter(pk=real.pk).update(format=real_format)
    real.refresh_from_db()
    synthetic.refresh_from_db()
    eval_run = None
    if evaluation is not None:
        eval_run = RunFactory(
            kind=Run.Kind.EVALUATE, status=Run.Status.SUCCEEDED, result=evaluation
        )
        eval_run.datasets.set([real, synthetic])
    down_run = None
    if downstream is not None:
        down_run = RunFactory(kind=Run.Kind.DOWNSTREAM, status=Run.Status.SUCCEEDED)
        down_run.datasets.set([real, synthetic])
        results_artifact(down_run, downstream)
    settings_ = {"min_n": {"realism": 4, "indistinguishable": 4}} | (targets or {})
    project = ProjectFactory(name=name, synthetic_dataset=synthetic, targets=settings_)
    return World(project, synthetic, real, eval_run, down_run, study if judgement else None)

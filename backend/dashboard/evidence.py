"""Where a project's evidence comes from, and each target's ``Evidence`` read off it.

The library (``validation.go_no_go``) judges; this module only finds the rows (the evaluate
run, the downstream run, the reader study and the chain that made the synthetic set), reads
their stored results and says, in ``caveats``, why a value may not count towards a
literature target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from backend.datasets.models import Dataset
from backend.reviews.models import Answer, Study
from backend.runs.downstream_page import load_results
from backend.runs.evaluation import dig
from backend.runs.models import Run
from validation.go_no_go import Evidence, mean_ci
from validation.reader_stats import Reading, study_statistics

#: Dataset formats whose images are not patients' (values may not meet a literature target).
NOT_PATIENT_DATA = {"phantom": "the procedural phantom dataset", "generated": "generated images"}


@dataclass
class Sources:
    """The rows a project's report is built from (None: not found yet)."""

    synthetic: Dataset
    generate: Run | None = None
    train: Run | None = None
    real: list[Dataset] = field(default_factory=list)
    evaluation: Run | None = None
    downstream: Run | None = None
    study: Study | None = None
    downstream_results: dict[str, Any] | None = None
    study_stats: dict[str, Any] | None = None
    readings: list[Reading] = field(default_factory=list)


def _succeeded(kind: str) -> QuerySet[Run]:
    return Run.objects.filter(kind=kind, status=Run.Status.SUCCEEDED).order_by("-created_at")


def find_sources(project: Any) -> Sources:
    """The project's pinned rows, or the newest finished ones about its synthetic set."""
    synthetic = project.synthetic_dataset
    sources = Sources(synthetic=synthetic)
    sources.generate = synthetic.generated_by
    if sources.generate is not None:
        sources.train = sources.generate.parents.order_by("-created_at").first()
    if sources.train is not None:
        sources.real = list(sources.train.datasets.all())
        for training_set in sources.train.training_sets.all():
            sources.real.extend(d for d in training_set.datasets.all() if d not in sources.real)
    sources.evaluation = (
        project.evaluation_run or _succeeded(Run.Kind.EVALUATE).filter(datasets=synthetic).first()
    )
    downstream = project.downstream_run
    if downstream is None:
        candidates = _succeeded(Run.Kind.DOWNSTREAM)
        downstream = candidates.filter(datasets=synthetic).first()
        if downstream is None and sources.generate is not None:
            downstream = candidates.filter(parents=sources.generate).first()
    sources.downstream = downstream
    if downstream is not None:
        sources.downstream_results = load_results(downstream)
    sources.study = (
        project.study
        or Study.objects.filter(synthetic_dataset=synthetic, status=Study.Status.CLOSED)
        .order_by("-closed_at")
        .first()
    )
    if sources.study is not None:
        sources.readings = study_readings(sources.study)
        sources.study_stats = study_statistics(sources.readings)
    return sources


def study_readings(study: Study) -> list[Reading]:
    """The complete answers of the readers who submitted, as ``Reading``s."""
    answers = (
        Answer.objects.filter(
            assignment__study=study, assignment__submitted_at__isnull=False, complete=True
        )
        .select_related("case", "assignment")
        .order_by("assignment_id", "case_id")
    )
    return [
        Reading(
            reader=str(a.assignment.reader_id),
            case=str(a.case_id),
            origin=a.case.origin,
            fst=a.case.fst,
            judgement=a.judgement or None,
            realism=a.realism,
            realistic={
                "asymmetry": a.asymmetry_realistic,
                "border": a.border_realistic,
                "colour": a.colour_realistic,
                "diameter": a.diameter_realistic,
            },
            scores={
                "asymmetry": a.asymmetry_score,
                "border": a.border_score,
                "colours": a.colours_score,
                "structures": a.structures_score,
            },
        )
        for a in answers
    ]


def _date(row: Any, attribute: str) -> str:
    value = getattr(row, attribute, None)
    return value.date().isoformat() if value else ""


def _data_caveats(datasets: list[Dataset]) -> list[str]:
    return [
        f"{d.name} is {NOT_PATIENT_DATA[d.format]}, not patient images"
        for d in datasets
        if d.format in NOT_PATIENT_DATA and d.origin == "real"
    ]


def evaluation_evidence(sources: Sources) -> list[Evidence]:
    run = sources.evaluation
    keys = ("fid", "lpips", "is", "tone_fidelity", "memorized")
    if run is None:
        why = f"no succeeded evaluate run of {sources.synthetic.name} yet"
        return [Evidence(key, None, pending=why) for key in keys]
    result = run.result or {}
    source = f"evaluate run #{run.pk}"
    common = {"source": source, "url": run.get_absolute_url(), "date": _date(run, "finished_at")}
    real_sets = [d for d in run.datasets.all() if d.pk != sources.synthetic.pk]
    data = _data_caveats(real_sets)
    weights = result.get("weights", {})

    def weight_caveat(name: str) -> list[str]:
        entry = weights.get(name)
        if entry is None:
            return [f"no record of the {name} weights"]
        return [] if entry.get("status") == "official" else [entry.get("label", "non-official")]

    evidence = []
    fid = dig(result, "fid", "overall")
    if fid and fid.get("value") is not None:
        caveats = weight_caveat("fid") + data
        dims = dig(result, "fid", "dims")
        if dims != 2048:
            caveats.insert(0, f"computed on {dims}-d features; the target is for 2048-d")
        evidence.append(
            Evidence(
                "fid",
                fid["value"],
                n=min(fid.get("n_real") or 0, fid.get("n_synthetic") or 0),
                caveats=tuple(caveats),
                detail=f"{fid.get('n_real')} real / {fid.get('n_synthetic')} synthetic",
                **common,
            )
        )
    else:
        evidence.append(Evidence("fid", None, pending=f"{source} has no FID", **common))
    lp = dig(result, "lpips", "fidelity", "overall")
    if lp and lp.get("mean") is not None:
        evidence.append(
            Evidence(
                "lpips",
                lp["mean"],
                n=lp.get("n"),
                caveats=tuple(weight_caveat("lpips") + data),
                **common,
            )
        )
    else:
        evidence.append(Evidence("lpips", None, pending=f"{source} has no LPIPS", **common))
    inception = dig(result, "is", "synthetic")
    if inception and inception.get("mean") is not None:
        evidence.append(
            Evidence(
                "is",
                inception["mean"],
                n=inception.get("n"),
                caveats=tuple(weight_caveat("fid")),
                detail=f"std {inception.get('std', 0):.2f} over 10 splits",
                **common,
            )
        )
    else:
        evidence.append(Evidence("is", None, pending=f"{source} has no Inception Score", **common))
    tone = dig(result, "tone", "overall")
    if tone and tone.get("within_one_rate") is not None:
        evidence.append(
            Evidence(
                "tone_fidelity",
                tone["within_one_rate"],
                n=tone.get("n_estimated") or tone.get("n"),
                caveats=tuple(data),
                detail=f"exact type {tone.get('exact_rate', 0):.0%}",
                **common,
            )
        )
    else:
        evidence.append(
            Evidence("tone_fidelity", None, pending=f"{source} has no tone fidelity", **common)
        )
    memo = result.get("memorization")
    if memo and memo.get("n_train"):
        evidence.append(
            Evidence(
                "memorized",
                memo.get("n_flagged", 0),
                n=memo.get("n_synthetic"),
                caveats=tuple(weight_caveat("lpips")),
                detail=f"{memo.get('n_synthetic')} synthetic against {memo.get('n_train')} training images",
                **common,
            )
        )
    else:
        why = dig(memo, "reason") or "no memorization audit"
        evidence.append(Evidence("memorized", None, pending=f"{source}: {why}", **common))
    return evidence


def downstream_evidence(sources: Sources) -> list[Evidence]:
    run, results = sources.downstream, sources.downstream_results
    if run is None or not results or "go_no_go" not in results:
        why = (
            "no succeeded downstream run with this synthetic set yet"
            if run is None
            else f"downstream run #{run.pk} has no results"
        )
        return [Evidence(key, None, pending=why) for key in ("auroc_v_vi", "auroc_i_iii")]
    common = {
        "source": f"downstream run #{run.pk}",
        "url": run.get_absolute_url(),
        "date": _date(run, "finished_at"),
    }
    caveats = tuple(dig(results, "evidence", "reasons") or ())
    baseline = dig(results, "arms", "baseline", "groups") or {}
    evidence = []
    for key, gate, group in (
        ("auroc_v_vi", "fst_v_vi_improvement", "V-VI"),
        ("auroc_i_iii", "fst_i_iii_change", "I-III"),
    ):
        entry = results["go_no_go"][gate]
        if not entry.get("available"):
            evidence.append(Evidence(key, None, pending=entry.get("reason", ""), **common))
            continue
        evidence.append(
            Evidence(
                key,
                entry["relative"],
                ci=tuple(entry["relative_ci"]) if None not in entry["relative_ci"] else None,
                n=dig(baseline, group, "n"),
                caveats=caveats,
                detail=(
                    f"AUROC {entry['baseline_auroc']:.3f} → {entry['augmented_auroc']:.3f} "
                    f"(absolute {entry['absolute']:+.3f})"
                ),
                **common,
            )
        )
    return evidence


def study_caveats(study: Study, stats: dict[str, Any]) -> list[str]:
    caveats = []
    if study.simulated_readers:
        caveats.append("the answers come from simulated readers (demo), not dermatologists")
    if stats.get("n_readers", 0) < 2:
        caveats.append(f"{stats.get('n_readers', 0)} reader(s) submitted; at least 2 are needed")
    return caveats


def study_evidence(sources: Sources) -> list[Evidence]:
    study, stats = sources.study, sources.study_stats
    if study is None or stats is None:
        why = f"no closed reader study of {sources.synthetic.name} yet"
        return [Evidence(key, None, pending=why) for key in ("realism", "indistinguishable")]
    common = {
        "source": f"reader study #{study.pk}",
        "url": study.get_absolute_url(),
        "date": _date(study, "closed_at"),
    }
    caveats = tuple(study_caveats(study, stats))
    synthetic_realism = [
        r.realism for r in sources.readings if r.origin == "synthetic" and r.realism is not None
    ]
    realism = dig(stats, "realism", "synthetic") or {}
    evidence = []
    if realism.get("mean") is None:
        evidence.append(Evidence("realism", None, pending="no realism scores yet", **common))
    else:
        evidence.append(
            Evidence(
                "realism",
                realism["mean"],
                ci=mean_ci(synthetic_realism),
                n=len({r.case for r in sources.readings if r.origin == "synthetic"}),
                caveats=caveats,
                detail=(
                    f"{realism.get('n')} readings by {stats.get('n_readers')} readers; "
                    f"real cases {(dig(stats, 'realism', 'real', 'mean') or 0):.2f}"
                ),
                **common,
            )
        )
    indist = dig(stats, "fooling", "indistinguishable") or {}
    if indist.get("value") is None:
        evidence.append(
            Evidence("indistinguishable", None, pending="no synthetic case judged yet", **common)
        )
    else:
        evidence.append(
            Evidence(
                "indistinguishable",
                indist["value"],
                ci=tuple(indist["ci"]) if indist.get("ci") else None,
                n=indist.get("n"),
                caveats=caveats,
                detail=f"{indist.get('k')} of {indist.get('n')} synthetic cases called real by most readers",
                **common,
            )
        )
    return evidence


def size_evidence(sources: Sources) -> Evidence:
    synthetic = sources.synthetic
    return Evidence(
        "set_size",
        synthetic.image_count,
        source=f"dataset {synthetic.name}",
        url=synthetic.get_absolute_url(),
        date=_date(synthetic, "created_at"),
        n=synthetic.image_count,
    )


def collect(sources: Sources) -> list[Evidence]:
    """Every target's evidence, in one list (order does not matter)."""
    return [
        *evaluation_evidence(sources),
        *downstream_evidence(sources),
        *study_evidence(sources),
        size_evidence(sources),
    ]

"""The dashboard's verdict from real rows: GO, NO-GO and INCOMPLETE, and what never passes."""

from __future__ import annotations

from typing import Any

import pytest

from backend.dashboard.report import build_report
from backend.reviews.models import Study
from tests.dashboard.factories import downstream_results, evaluation_result, make_world

pytestmark = pytest.mark.django_db


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {row["key"]: row["status"] for row in report["targets"]}


def test_go_when_every_target_passes_on_comparable_evidence(reader_a: Any, reader_b: Any) -> None:
    world = make_world(
        [reader_a, reader_b], evaluation=evaluation_result(), downstream=downstream_results()
    )
    report = build_report(world.project)
    assert set(statuses(report).values()) == {"pass"}, [
        (r["key"], r["reason"]) for r in report["targets"]
    ]
    assert report["decision"]["verdict"] == "GO"
    rows = {row["key"]: row for row in report["targets"]}
    assert rows["fid"]["value"] == 12.0 and rows["fid"]["n"] == 5000
    assert rows["indistinguishable"]["value"] == 1.0  # both readers called every case real
    assert rows["realism"]["value"] == 6.0
    assert rows["auroc_v_vi"]["ci"] == [0.11, 0.20]
    assert rows["set_size"]["value"] == 60_000
    assert rows["fid"]["source"] == f"evaluate run #{world.evaluation.pk}"
    assert [step["found"] for step in report["lineage"]][3:] == [True, True, True]
    assert not report["show_failure_modes"]


def test_no_go_names_the_failed_targets_and_the_failure_modes(reader_a: Any, reader_b: Any) -> None:
    world = make_world(
        [reader_a, reader_b],
        evaluation=evaluation_result(
            fid=45.0,
            ita_real=[40.0 + i % 7 for i in range(60)],
            ita_synthetic=[-20.0 + i % 5 for i in range(60)],
        ),
        downstream=downstream_results(all_=(-0.08, -0.12, -0.04)),
        judgement="synthetic",  # readers spot every synthetic case ... and call the real ones synthetic too
    )
    report = build_report(world.project)
    assert report["decision"]["verdict"] == "NO-GO"
    assert statuses(report)["fid"] == "fail"
    assert statuses(report)["indistinguishable"] == "fail"
    assert any(reason.startswith("FID:") for reason in report["decision"]["reasons"])
    assert report["show_failure_modes"]
    modes = {m["name"]: m for m in report["failure_modes"]}
    assert modes["FID too high"]["triggered"]
    assert "45.00 > 30" in modes["FID too high"]["evidence"][0]
    assert modes["Distribution shift"]["triggered"]
    assert "KS" in modes["Distribution shift"]["evidence"][0]
    assert modes["Overfitting to synthetic artifacts"]["triggered"]


def test_incomplete_while_evidence_is_missing(reader_a: Any, reader_b: Any) -> None:
    world = make_world([reader_a, reader_b], evaluation=None, downstream=None, judgement=None)
    report = build_report(world.project)
    found = statuses(report)
    assert report["decision"]["verdict"] == "INCOMPLETE"
    assert found["set_size"] == "pass"
    assert {found[k] for k in found if k != "set_size"} == {"pending"}
    # the open study is not evidence: only a closed one is
    assert Study.objects.filter(pk=world.project.pk).count() in (0, 1)
    reasons = " ".join(report["decision"]["reasons"])
    assert "no succeeded evaluate run" in reasons and "no closed reader study" in reasons


def test_stand_ins_simulated_readers_and_small_sets_are_never_a_pass(
    reader_a: Any, reader_b: Any
) -> None:
    world = make_world(
        [reader_a, reader_b],
        evaluation=evaluation_result(official=False),
        downstream=downstream_results(literature=False),
    )
    Study.objects.filter(pk=world.study.pk).update(simulated_readers=True)
    report = build_report(world.project)
    found = statuses(report)
    for key in (
        "fid",
        "lpips",
        "is",
        "memorized",
        "auroc_v_vi",
        "auroc_i_iii",
        "realism",
        "indistinguishable",
    ):
        assert found[key] == "not comparable", (key, report["targets"])
    rows = {row["key"]: row for row in report["targets"]}
    assert "NON-OFFICIAL" in rows["fid"]["reason"]
    assert "simulated readers" in rows["realism"]["reason"]
    assert "phantom" in rows["auroc_v_vi"]["reason"]
    assert report["decision"]["verdict"] == "INCOMPLETE"


def test_too_few_images_or_low_dims_are_not_comparable(reader_a: Any, reader_b: Any) -> None:
    world = make_world(
        [reader_a, reader_b],
        evaluation=evaluation_result(n=500, dims=64),
        downstream=downstream_results(),
    )
    rows = {row["key"]: row for row in build_report(world.project)["targets"]}
    assert rows["fid"]["status"] == "not comparable"
    assert "64-d" in rows["fid"]["reason"] and "fewer than the 2048" in rows["fid"]["reason"]
    assert rows["is"]["status"] == "not comparable"


def test_project_thresholds_and_rule_change_the_verdict(reader_a: Any, reader_b: Any) -> None:
    world = make_world(
        [reader_a, reader_b],
        evaluation=evaluation_result(fid=25.0),
        downstream=downstream_results(v_vi=(0.12, 0.05, 0.2)),
    )
    assert build_report(world.project)["decision"]["verdict"] == "NO-GO"  # FID 25 > 20
    world.project.targets = world.project.targets | {"thresholds": {"fid": 30.0}}
    world.project.save()
    assert build_report(world.project)["decision"]["verdict"] == "GO"
    world.project.targets = world.project.targets | {"rule": "ci"}
    world.project.save()
    report = build_report(world.project)
    assert statuses(report)["auroc_v_vi"] == "pending"  # CI [+5%, +20%] straddles +10%
    # 4 of 4 synthetic cases called real: Wilson CI [49%, 100%] straddles 60% too
    assert statuses(report)["indistinguishable"] == "pending"
    assert statuses(report)["realism"] == "pass"  # every reading 6: the CI is [6, 6]
    assert report["decision"]["verdict"] == "INCOMPLETE"
    world.project.targets = world.project.targets | {
        "disabled": ["auroc_v_vi", "indistinguishable"]
    }
    world.project.save()
    report = build_report(world.project)
    assert "auroc_v_vi" not in statuses(report)
    assert report["decision"]["verdict"] == "GO"


def test_reader_study_section_and_charts(reader_a: Any, reader_b: Any) -> None:
    world = make_world(
        [reader_a, reader_b], evaluation=evaluation_result(), downstream=downstream_results()
    )
    report = build_report(world.project)
    section = report["reader_study"]
    assert section["n_readers"] == 2 and section["n_cases"] == 8
    assert section["pooled"]["accuracy"]["text"] == "50%"  # "real" for everything: half right
    assert [g["group"] for g in section["groups"]] == ["I-III", "IV", "V-VI"]
    assert report["charts"]["accuracy"]["items"][-1]["label"] == "Pooled"
    assert report["charts"]["realism"]["bars"]
    assert report["charts"]["auroc"]["bars"]
    grid = report["sample_grid"]
    assert grid["rows"] and all(
        img["src"].startswith("data:image/png;base64,")
        for row in grid["rows"]
        for cell in row["cells"]
        for img in cell
    )


def _cell(report: dict[str, Any], title: str) -> dict[str, Any]:
    return next(
        img
        for row in report["sample_grid"]["rows"]
        for cell in row["cells"]
        for img in cell
        if img["title"] == title
    )


def test_thumbnails_are_cached_by_content_and_failures_are_not(
    reader_a: Any, reader_b: Any
) -> None:
    from django.core.cache import cache

    from validation.vocabulary import FST

    cache.clear()
    world = make_world([reader_a, reader_b], evaluation=evaluation_result())
    image = world.synthetic.images.order_by("id").first()  # the first of its cell: shown
    title = f"FST {FST(image.fst).roman}, {image.diagnosis}"
    path = image.fetch()
    good = path.read_bytes()

    path.write_bytes(b"not a picture")
    assert _cell(build_report(world.project), title)["src"] == ""
    path.write_bytes(good)
    shown = _cell(build_report(world.project), title)["src"]
    assert shown.startswith("data:image/png;base64,")  # the failure was not remembered

    for other in world.synthetic.images.all():
        other.fetch().unlink(missing_ok=True)
    again = build_report(world.project)
    assert _cell(again, title)["src"] == shown  # from the cache: no file was read
    assert all(
        img["src"] for row in again["sample_grid"]["rows"] for c in row["cells"] for img in c
    )

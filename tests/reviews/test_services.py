"""Building a study: the matched draw, byte-homogeneous copies, stored orders; saving answers."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from backend.datasets.models import Image, Origin
from backend.reviews import services
from backend.reviews.models import Answer, Assignment, Case, Slot, Study
from generation.generate import PROVENANCE_KEY
from tests.reviews.factories import (
    MODEL_NAME,
    complete_answer,
    make_study,
    real_dataset,
    synthetic_dataset,
)
from tests.validation.test_study_copies import png_chunks
from validation.reader_study import reader_order

pytestmark = pytest.mark.django_db


def copy_bytes(case: Case) -> bytes:
    with default_storage.open(case.file, "rb") as handle:
        return handle.read()


def test_the_default_study_is_50_real_and_50_synthetic_matched_and_byte_homogeneous(
    reader_a: Any,
) -> None:
    real, synthetic = real_dataset(per_stratum=25), synthetic_dataset(per_stratum=25)
    plan = services.StudyPlan(
        name="default size",
        real_dataset=real,
        real_split=Image.Split.TEST,
        synthetic_dataset=synthetic,
        copy_size=32,
    )
    assert (plan.n_real, plan.n_synthetic) == (50, 50)
    study = services.create_study(plan, [reader_a])
    cases = list(study.cases.select_related("image"))
    assert Counter(c.origin for c in cases) == {Origin.REAL: 50, Origin.SYNTHETIC: 50}
    assert all(c.image.split == Image.Split.TEST for c in cases if c.origin == Origin.REAL)
    mix = {
        origin: Counter((c.fst, c.diagnosis) for c in cases if c.origin == origin)
        for origin in Origin.values
    }
    assert mix[Origin.REAL] == mix[Origin.SYNTHETIC]

    datas = [copy_bytes(c) for c in cases]
    # Unpadded, the noisy camera JPEGs and the smooth synthetic PNGs differ in size.
    assert {len(d) for d in datas} == {study.copy_bytes}
    for case, data in zip(cases, datas, strict=True):
        with PILImage.open(io.BytesIO(data)) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (32, 32))
            assert set(image.info) <= {"dpi"} or not image.info, image.info
            assert not getattr(image, "text", {})
            assert "icc_profile" not in image.info and "exif" not in image.info
        assert {kind for kind, _ in png_chunks(data)} == {b"IHDR", b"IDAT", b"IEND"}
        for needle in (PROVENANCE_KEY.encode(), MODEL_NAME.encode(), b"DermLite"):
            assert needle not in data, (needle, case.origin)
        # Random storage names: nothing of the source's id, file name or digest.
        stem = case.file.rsplit("/", 1)[-1]
        assert case.image.image_id not in stem and case.image.sha256[:16] not in case.file
    assert len({c.file for c in cases}) == 100


def test_the_copies_can_be_jpeg_with_one_set_of_encoder_settings(reader_a: Any) -> None:
    study = make_study([reader_a], copy_format="JPEG")
    datas = [copy_bytes(c) for c in study.cases.all()]
    assert len({len(d) for d in datas}) == 1
    tables = set()
    for data in datas:
        with PILImage.open(io.BytesIO(data)) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 32))
            assert "exif" not in image.info and "icc_profile" not in image.info
            tables.add(repr(sorted(image.quantization.items())))
    assert len(tables) == 1


def test_each_reader_has_a_stored_seeded_order_and_own_tokens(
    reader_a: Any, reader_b: Any, reader_c: Any
) -> None:
    study = make_study([reader_a, reader_b, reader_c])
    case_ids = list(study.cases.order_by("id").values_list("id", flat=True))
    orders = {}
    for assignment in study.assignments.all():
        slots = list(assignment.slots.order_by("position"))
        assert [s.position for s in slots] == list(range(1, len(case_ids) + 1))
        # The stored order is the audit function of the stored seed.
        expected = [case_ids[i] for i in reader_order(len(case_ids), assignment.order_seed)]
        assert [s.case_id for s in slots] == expected
        orders[assignment.reader.username] = tuple(expected)
    assert len(set(orders.values())) == 3
    tokens = Slot.objects.filter(assignment__study=study).values_list("case_id", "token")
    assert len({t for _, t in tokens}) == len(tokens) == 3 * len(case_ids)
    # Stable: asking again gives the same order.
    again = Assignment.objects.get(study=study, reader=reader_a)
    assert (
        tuple(again.slots.order_by("position").values_list("case_id", flat=True))
        == orders["reader-a"]
    )


def test_too_many_cases_or_a_non_reader_are_refused_with_field_errors(
    reader_a: Any, ml_engineer: Any
) -> None:
    real, synthetic = real_dataset(per_stratum=2), synthetic_dataset(per_stratum=2)
    plan = services.StudyPlan(
        name="too big",
        real_dataset=real,
        real_split=Image.Split.TEST,
        synthetic_dataset=synthetic,
        n_real=5,
        n_synthetic=5,
    )
    with pytest.raises(ValidationError) as error:
        services.create_study(plan, [reader_a])
    assert "n_real" in error.value.message_dict
    assert services.largest_matched_draw(real, Image.Split.TEST, synthetic) == 4
    with pytest.raises(ValidationError) as error:
        make_study([ml_engineer], name="wrong")
    assert "readers" in error.value.message_dict
    assert not Study.objects.filter(name="wrong").exists()
    with pytest.raises(ValidationError) as error:
        services.create_study(
            services.StudyPlan(
                name="swapped", real_dataset=synthetic, real_split="", synthetic_dataset=real
            )
        )
    assert set(error.value.message_dict) == {"real_dataset", "synthetic_dataset"}


def test_a_failed_creation_deletes_the_copies_it_wrote(ml_engineer: Any) -> None:
    before = (
        set(default_storage.listdir("studies")[1]) if default_storage.exists("studies") else set()
    )
    with pytest.raises(ValidationError):
        make_study([ml_engineer], name="rolled back")
    after = (
        set(default_storage.listdir("studies")[1]) if default_storage.exists("studies") else set()
    )
    assert after == before


def test_saving_is_an_idempotent_upsert_and_time_only_grows(reader_a: Any) -> None:
    study = make_study([reader_a])
    slot = Slot.objects.filter(assignment__study=study).first()
    values = {"judgement": "synthetic", "confidence": 4}
    services.save_answer(slot, values, reading_ms=2000)
    services.save_answer(slot, values, reading_ms=2000)
    answer = services.save_answer(slot, values, reading_ms=1500)  # a stale tab
    assert Answer.objects.filter(assignment=slot.assignment).count() == 1
    assert answer.reading_ms == 2000 and answer.saves == 3 and not answer.complete
    answer = services.save_answer(
        slot,
        {
            "realism": 6,
            "asymmetry_realistic": True,
            "border_realistic": False,
            "colour_realistic": True,
            "diameter_realistic": True,
        },
        reading_ms=2600,
    )
    assert answer.complete and answer.judgement == "synthetic" and answer.reading_ms == 2600
    with pytest.raises(ValidationError):
        services.save_answer(slot, {"realism": 9}, reading_ms=0)


def test_answers_can_be_final_once_complete_when_the_study_says_so(reader_a: Any) -> None:
    study = make_study([reader_a], allow_answer_modification=False)
    slot = Slot.objects.filter(assignment__study=study).first()
    services.save_answer(slot, {"judgement": "real"}, reading_ms=10)
    services.save_answer(slot, {"judgement": "synthetic"}, reading_ms=10)  # incomplete: editable
    complete = {k: v for k, v in complete_answer().items() if k != "reading_ms"}
    typed = complete | {
        "confidence": 3,
        "realism": 5,
        "asymmetry_realistic": True,
        "border_realistic": True,
        "colour_realistic": False,
        "diameter_realistic": True,
    }
    services.save_answer(slot, typed, reading_ms=10)
    with pytest.raises(ValidationError):
        services.save_answer(slot, {"judgement": "synthetic"}, reading_ms=10)


def test_submitting_needs_every_case_and_then_freezes_the_answers(reader_a: Any) -> None:
    study = make_study([reader_a], n=2)
    assignment = study.assignments.get()
    slots = list(assignment.slots.all())
    typed = {
        "judgement": "real",
        "confidence": 3,
        "realism": 5,
        "asymmetry_realistic": True,
        "border_realistic": True,
        "colour_realistic": False,
        "diameter_realistic": True,
    }
    services.save_answer(slots[0], typed, reading_ms=10)
    with pytest.raises(ValidationError, match="still need an answer"):
        services.submit_assignment(assignment)
    for slot in slots[1:]:
        services.save_answer(slot, typed, reading_ms=10)
    services.submit_assignment(assignment)
    services.submit_assignment(assignment)  # a double submit is harmless
    assignment.refresh_from_db()
    assert assignment.is_submitted
    with pytest.raises(ValidationError):
        services.save_answer(slots[0], {"judgement": "synthetic"}, reading_ms=10)


def test_a_closed_study_exports_the_key_joined_to_answers_orders_and_times(
    reader_a: Any, reader_b: Any
) -> None:
    study = make_study([reader_a, reader_b], n=2)
    slot = Slot.objects.filter(assignment__reader=reader_a, assignment__study=study).get(position=1)
    services.save_answer(slot, {"judgement": "synthetic", "confidence": 2}, reading_ms=4321)
    services.close_study(study)
    rows = services.export_rows(study)
    assert len(rows) == 2 * 4
    row = next(r for r in rows if r["reader"] == "reader-a" and r["position"] == 1)
    assert row["origin"] == slot.case.origin and row["case_uid"] == str(slot.case.uid)
    assert row["judgement"] == "synthetic" and row["reading_ms"] == 4321
    assert row["correct"] == (slot.case.origin == "synthetic")
    assert row["source_dataset"] == slot.case.image.dataset.name
    document = services.export_document(study)
    assert document["study"]["seed"] == study.seed
    order_a = next(r for r in document["readers"] if r["reader"] == "reader-a")
    assert order_a["order"][0] == str(slot.case.uid)
    assert len(document["cases"]) == 4

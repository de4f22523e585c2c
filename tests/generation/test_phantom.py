"""Tests of the procedural phantom dataset (generation/phantom)."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.phantom import (
    COLOURS,
    DEFAULT_FST_MIX,
    METADATA_COLUMNS,
    PALETTE,
    STRUCTURES,
    SUPPORTED_DIAGNOSES,
    PhantomConfig,
    build_phantom_dataset,
    contrast_factor,
    largest_remainder,
    plan_phantom,
    read_phantom_metadata,
    render_phantom,
    reskin,
    stable_allocation,
)
from generation.phantom.cli import main as cli_main
from generation.phantom.lesion import PINK, build_lesion
from validation.files import sha256_file
from validation.skin import DEFAULT_THRESHOLDS, fst_from_ita, ita_degrees, srgb_to_lab
from validation.vocabulary import DIAGNOSES

REPO = Path(__file__).resolve().parents[2]
UNIFORM_FST = {f: 1.0 for f in range(1, 7)}
UNIFORM_DX = dict.fromkeys(SUPPORTED_DIAGNOSES, 1.0)

REQUIRED_COLUMNS = (
    "image_id",
    "file",
    "lesion_id",
    "patient_id",
    "fst",
    "ita",
    "skin_L",
    "skin_a",
    "skin_b",
    "diagnosis",
    "malignant",
    "asymmetry_axes",
    "border_segments",
    "colours",
    "n_colours",
    "diameter_mm",
    "structures",
    "hair_count",
)


def _lab(image: Image.Image) -> np.ndarray:
    return srgb_to_lab(np.asarray(image, dtype=np.float64) / 255.0)


@pytest.fixture(scope="module")
def uniform_renders() -> list[tuple[object, object]]:
    """180 images at 64 px, all skin types and diagnoses equally often."""
    config = PhantomConfig(
        count=180, image_size=64, seed=11, fst_mix=UNIFORM_FST, diagnosis_mix=UNIFORM_DX
    )
    return [(spec, render_phantom(spec)) for spec in plan_phantom(config)]


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": True}, "count"),
        ({"count": 2.5}, "count"),
        ({"image_size": 16}, "image_size"),
        ({"image_size": 513}, "image_size"),
        ({"seed": -1}, "seed"),
        ({"fst_mix": {7: 1.0}}, "fst_mix"),
        ({"fst_mix": {1: 0.0, 2: 0.0}}, "fst_mix"),
        ({"fst_mix": {1: -0.5, 2: 1.0}}, "fst_mix"),
        ({"fst_mix": {"I": 1.0, 1: 1.0}}, "fst_mix"),
        ({"fst_mix": {1: 1.0, 6: 0.0001}}, "fst_mix"),
        ({"diagnosis_mix": {"no_such_code": 1.0}}, "diagnosis_mix"),
        ({"diagnosis_mix": {"scc": 1.0}}, "diagnosis_mix"),
        ({"diagnosis_mix": {"nevus": float("nan")}}, "diagnosis_mix"),
        ({"hair_probability": 1.5}, "hair_probability"),
        ({"max_hairs": 0}, "max_hairs"),
        ({"max_images_per_lesion": 0}, "max_images_per_lesion"),
        ({"multi_image_probability": -0.1}, "multi_image_probability"),
        ({"max_lesions_per_patient": 6}, "max_lesions_per_patient"),
        ({"field_of_view_mm": 0.0}, "field_of_view_mm"),
        ({"supersample": 5}, "supersample"),
    ],
)
def test_config_errors_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        PhantomConfig(**changes)  # type: ignore[arg-type]


def test_config_normalises_mixes() -> None:
    config = PhantomConfig(fst_mix={"I": 2, "VI": 2}, diagnosis_mix={"melanoma": 3, "nevus": 1})
    assert config.fst_mix == {1: 0.5, 2: 0.0, 3: 0.0, 4: 0.0, 5: 0.0, 6: 0.5}
    assert config.diagnosis_mix == {
        "nevus": 0.25,
        "melanoma": 0.75,
        "bcc": 0.0,
        "seborrheic_keratosis": 0.0,
    }


def test_config_json_round_trip() -> None:
    config = PhantomConfig(
        count=17,
        image_size=48,
        seed=5,
        fst_mix={1: 0.1, 2: 0.2, 3: 0.3, 4: 0.2, 5: 0.1, 6: 0.1},
        diagnosis_mix={"nevus": 0.4, "melanoma": 0.3, "bcc": 0.2, "seborrheic_keratosis": 0.1},
        hair_probability=0.0,
        max_images_per_lesion=2,
        field_of_view_mm=20.0,
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert PhantomConfig.from_dict(data) == config
    assert PhantomConfig.from_dict(PhantomConfig().to_dict()) == PhantomConfig()
    with pytest.raises(ValueError, match=r"^colour_depth: "):
        PhantomConfig.from_dict({**data, "colour_depth": 16})


# -- allocation --------------------------------------------------------------------------------


def test_largest_remainder() -> None:
    assert largest_remainder([0.5, 0.3, 0.2], 10) == [5, 3, 2]
    assert largest_remainder([1, 1, 1], 10) == [4, 3, 3]
    assert largest_remainder([0.15, 0.35, 0.28, 0.175, 0.03, 0.015], 100) == [15, 35, 28, 18, 3, 1]
    assert sum(largest_remainder([0.3, 0.3, 0.4], 7)) == 7


def test_stable_allocation_meets_the_quota_for_every_prefix() -> None:
    rng = np.random.default_rng(0)
    for trial in range(10):
        weights = rng.random(int(rng.integers(2, 7))) + 0.01
        weights /= weights.sum()
        labels = stable_allocation(weights, 400, [trial])
        counts = np.cumsum(np.eye(weights.size, dtype=np.int64)[labels], axis=0)
        n = np.arange(1, 401)[:, None]
        assert np.all(counts >= np.floor(n * weights + 1e-9))
        assert np.all(counts <= np.ceil(n * weights - 1e-9))
        assert np.array_equal(stable_allocation(weights, 150, [trial]), labels[:150])


@pytest.mark.parametrize("count", [1000, 200, 37, 999])
def test_counts_follow_the_mix(count: int) -> None:
    config = PhantomConfig(count=count, seed=3)
    specs = plan_phantom(config)
    fst_counts = Counter(spec.fst for spec in specs)
    dx_counts = Counter(spec.diagnosis for spec in specs)
    for fst, weight in config.fst_mix.items():
        assert (
            math.floor(count * weight + 1e-9) <= fst_counts[fst] <= math.ceil(count * weight - 1e-9)
        )
    for code, weight in config.diagnosis_mix.items():
        assert (
            math.floor(count * weight + 1e-9) <= dx_counts[code] <= math.ceil(count * weight - 1e-9)
        )
    if count in (1000, 200):  # every quota is a whole number: exactly the largest remainder
        fsts = list(config.fst_mix)
        assert [fst_counts[f] for f in fsts] == largest_remainder(
            list(config.fst_mix.values()), count
        )
        assert [dx_counts[d] for d in SUPPORTED_DIAGNOSES] == largest_remainder(
            list(config.diagnosis_mix.values()), count
        )
    # shuffled, not blocked: the first 50 images already hold three or more skin types
    assert len({spec.fst for spec in specs[:50]}) >= min(3, len({spec.fst for spec in specs}))


def test_default_mix_is_skewed_like_public_data() -> None:
    assert DEFAULT_FST_MIX[5] + DEFAULT_FST_MIX[6] < 0.05
    specs = plan_phantom(PhantomConfig(count=1000))
    assert sum(spec.fst >= 5 for spec in specs) < 50
    assert Counter(spec.diagnosis for spec in specs).most_common(1)[0][0] == "nevus"


# -- the plan ----------------------------------------------------------------------------------


def test_plan_is_stable_when_count_grows() -> None:
    short = plan_phantom(PhantomConfig(count=40, seed=9))
    long = plan_phantom(PhantomConfig(count=90, seed=9))
    assert long[:40] == short
    assert plan_phantom(PhantomConfig(count=40, seed=10)) != short


def test_lesions_and_patients_group_images() -> None:
    specs = plan_phantom(PhantomConfig(count=300, seed=4))
    by_lesion: dict[str, list] = defaultdict(list)
    by_patient: dict[str, list] = defaultdict(list)
    for spec in specs:
        by_lesion[spec.lesion_id].append(spec)
        by_patient[spec.patient_id].append(spec)
    for shots in by_lesion.values():
        first = shots[0]
        assert [s.shot for s in shots] == list(range(len(shots)))
        assert len(shots) <= 3
        for other in shots[1:]:
            assert other.patient_id == first.patient_id
            assert (other.fst, other.diagnosis, other.colours, other.diameter_mm) == (
                first.fst,
                first.diagnosis,
                first.colours,
                first.diameter_mm,
            )
            assert other.lesion_seed == first.lesion_seed
            assert other.image_seed != first.image_seed
    for images in by_patient.values():
        assert len({(s.fst, s.skin_lab) for s in images}) == 1
        assert len({s.lesion_id for s in images}) <= 3
    assert any(len(shots) >= 2 for shots in by_lesion.values())
    assert any(len({s.lesion_id for s in images}) >= 2 for images in by_patient.values())
    assert len(by_lesion) < len(specs)


def test_abcd_follow_the_diagnosis() -> None:
    config = PhantomConfig(count=1200, seed=2, diagnosis_mix=UNIFORM_DX)
    specs = plan_phantom(config)
    groups: dict[str, list] = defaultdict(list)
    for spec in specs:
        groups[spec.diagnosis].append(spec)
        assert spec.malignant is DIAGNOSES[spec.diagnosis].malignant
        assert spec.asymmetry_axes in (0, 1, 2)
        assert 0 <= spec.border_segments <= 8
        assert set(spec.irregular_segments) <= set(range(8))
        assert spec.colours and set(spec.colours) <= set(COLOURS)
        assert spec.structures and set(spec.structures) <= set(STRUCTURES)
        assert 0 < spec.diameter_mm <= 0.8 * config.field_of_view_mm
    for spec in groups["nevus"]:
        assert set(spec.colours) <= {"light_brown", "dark_brown"}
    for spec in groups["melanoma"]:
        assert 3 <= spec.n_colours <= 5
    for spec in groups["bcc"]:
        assert "red" in spec.colours and "arborizing_vessels" in spec.structures

    def mean(code: str, attribute: str) -> float:
        return float(np.mean([getattr(spec, attribute) for spec in groups[code]]))

    for attribute in ("n_colours", "asymmetry_axes", "border_segments", "diameter_mm"):
        assert mean("melanoma", attribute) > mean("nevus", attribute), attribute
    assert mean("melanoma", "diameter_mm") > 1.3 * mean("nevus", "diameter_mm")


def test_asymmetry_and_border_are_drawn() -> None:
    """Axes of asymmetry show in the outline; irregular segments have sharp edges."""
    specs = plan_phantom(PhantomConfig(count=240, seed=8, diagnosis_mix=UNIFORM_DX))
    scores: dict[int, list[float]] = defaultdict(list)
    sharp, soft = [], []
    for spec in specs:
        model = build_lesion(spec)
        r = model.radius
        t = r.size
        mirror_x = r[(-np.arange(t)) % t]  # r(-theta)
        mirror_y = r[(t // 2 - np.arange(t)) % t]  # r(pi - theta)
        scores[spec.asymmetry_axes].append(
            float(np.abs(r - mirror_x).mean() + np.abs(r - mirror_y).mean()) / float(r.mean())
        )
        segment = np.arange(t) * 8 // t
        centre = (np.arange(t) % (t // 8) > t // 32) & (np.arange(t) % (t // 8) < 3 * t // 32)
        relative = model.edge / r
        for s in range(8):
            (sharp if s in spec.irregular_segments else soft).append(
                float(relative[(segment == s) & centre].mean())
            )
    means = [float(np.mean(scores[k])) for k in (0, 1, 2)]
    assert means[0] < means[1] < means[2]
    assert np.mean(sharp) < 0.5 * np.mean(soft)


def test_reskin_keeps_the_lesion() -> None:
    spec = plan_phantom(PhantomConfig(count=5, seed=1))[3]
    for fst in range(1, 7):
        other = reskin(spec, fst)
        assert other.fst == fst
        low, high = DEFAULT_THRESHOLDS.ita_range(fst)
        assert low < other.ita < high
        assert (
            dataclasses.replace(other, fst=spec.fst, skin_lab=spec.skin_lab, ita=spec.ita) == spec
        )


# -- rendering ---------------------------------------------------------------------------------


def test_skin_ita_matches_the_skin_type(uniform_renders: list) -> None:
    in_range = 0
    for spec, render in uniform_renders:
        lab = _lab(render.image)
        mask = render.skin_mask
        assert mask.sum() > 50
        ita = float(np.median(ita_degrees(lab[..., 0][mask], lab[..., 2][mask])))
        low, high = DEFAULT_THRESHOLDS.ita_range(spec.fst)
        in_range += low <= ita <= high
        assert abs(int(fst_from_ita(ita)) - spec.fst) <= 1
        assert abs(ita - spec.ita) < 2.0
        assert 25 <= spec.skin_lab[0] <= 85
    assert in_range / len(uniform_renders) >= 0.95


def test_masks_are_consistent(uniform_renders: list) -> None:
    for spec, render in uniform_renders:
        size = spec.image_size
        assert render.image.size == (size, size) and render.image.mode == "RGB"
        for mask in (render.lesion_mask, render.skin_mask, render.hair_mask, render.field_mask):
            assert mask.shape == (size, size) and mask.dtype == bool
        assert not (render.skin_mask & render.lesion_mask).any()
        assert not (render.skin_mask & render.hair_mask).any()
        assert not (render.skin_mask & ~render.field_mask).any()
        assert render.lesion_mask.any()
        assert (spec.hair_count == 0) == (not render.hair_mask.any())
        # the lesion's extent matches the recorded diameter
        rows, cols = np.nonzero(render.lesion_mask)
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        inside = render.field_mask[rows, cols].all()
        if inside:
            assert 0.6 * spec.diameter_mm < extent * spec.mm_per_pixel < 1.25 * spec.diameter_mm
    corners = [render.image.getpixel((0, 0)) for _, render in uniform_renders]
    assert max(max(c) for c in corners) < 40  # dark corners outside the dermoscope circle


def test_lesion_contrast_falls_with_skin_type(uniform_renders: list) -> None:
    assert [round(contrast_factor(f), 2) for f in range(1, 7)] == [
        1.0,
        0.89,
        0.78,
        0.67,
        0.56,
        0.45,
    ]
    delta: dict[int, list[float]] = defaultdict(list)
    for spec, render in uniform_renders:
        lab = _lab(render.image)
        lesion = render.lesion_mask & ~render.hair_mask
        skin = lab[render.skin_mask].mean(axis=0)
        delta[spec.fst].append(float(np.linalg.norm(lab[lesion].mean(axis=0) - skin)))
    means = [float(np.mean(delta[f])) for f in range(1, 7)]
    groups = [np.mean(means[0:2]), np.mean(means[2:4]), np.mean(means[4:6])]
    assert groups[0] > groups[1] > groups[2]
    assert means[5] < 0.7 * means[0]
    assert np.corrcoef(np.arange(6), means)[0, 1] < -0.9


def test_recorded_colours_are_drawn() -> None:
    """On light skin at 128 px, every recorded colour shows in the lesion's pixels."""
    config = PhantomConfig(
        count=48, image_size=128, seed=21, fst_mix={1: 1, 2: 1}, diagnosis_mix=UNIFORM_DX
    )
    names = list(PALETTE)
    references = np.array([[0.0, 0.0, 0.0], *(PALETTE[n] for n in names), PINK])
    for spec in plan_phantom(config):
        render = render_phantom(spec)
        lab = _lab(render.image)
        skin = np.median(lab[render.skin_mask], axis=0)
        offsets = (lab[render.lesion_mask & ~render.hair_mask] - skin) / spec.contrast
        nearest = np.argmin(((offsets[:, None, :] - references[None]) ** 2).sum(-1), axis=1)
        found = {
            names[k - 1] for k, n in Counter(nearest.tolist()).items() if 1 <= k <= 6 and n >= 3
        }
        assert set(spec.colours) <= found, (spec.image_id, spec.colours, found)
        if spec.diagnosis == "nevus":
            assert not found & {"white", "red", "blue_grey"}


def test_rendering_is_deterministic_and_reshots_differ() -> None:
    specs = plan_phantom(PhantomConfig(count=60, image_size=48, seed=6))
    first = render_phantom(specs[0])
    again = render_phantom(specs[0])
    assert first.image.tobytes() == again.image.tobytes()
    reshot = next(s for s in specs if s.shot == 1)
    original = next(s for s in specs if s.lesion_id == reshot.lesion_id and s.shot == 0)
    a, b = render_phantom(original), render_phantom(reshot)
    assert a.image.tobytes() != b.image.tobytes()
    # same lesion: its area changes only by the re-shot's shift out of the field, if at all
    assert abs(int(a.lesion_mask.sum()) - int(b.lesion_mask.sum())) < 0.3 * a.lesion_mask.sum()


@pytest.mark.parametrize("size", [32, 512])
def test_extreme_sizes(size: int) -> None:
    spec = plan_phantom(
        PhantomConfig(count=3, image_size=size, seed=12, diagnosis_mix={"melanoma": 1})
    )[2]
    render = render_phantom(spec)
    assert render.image.size == (size, size)
    assert render.lesion_mask.sum() > 4 and render.skin_mask.sum() > 50
    lab = _lab(render.image)
    mask = render.skin_mask
    ita = float(np.median(ita_degrees(lab[..., 0][mask], lab[..., 2][mask])))
    assert abs(ita - spec.ita) < 2.0


def test_classifier_does_worse_on_dark_skin() -> None:
    """Trained on light-skin-heavy phantoms, a simple classifier ranks dark-skin lesions worse.

    The same 200 test lesions are drawn twice, on FST I-II and on FST V-VI skin
    (``reskin``), so the AUROC difference comes from the skin alone.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    size = 32
    yy, xx = np.mgrid[0:size, 0:size] + 0.5 - size / 2
    radius = np.hypot(xx, yy) / size
    inner, ring = radius < 0.45, (radius > 0.33) & (radius < 0.45)

    def features(specs: list) -> np.ndarray:
        rows = []
        for spec in specs:
            lab = _lab(render_phantom(spec).image)
            diff = lab[inner] - np.median(lab[ring], axis=0)
            delta_e = np.linalg.norm(diff, axis=1)
            rows.append(
                [
                    *(np.mean(delta_e > t) for t in (4, 8, 16, 32)),
                    np.mean(diff[:, 0] < -25),  # dark
                    np.mean(diff[:, 2] < -8),  # bluish
                    np.mean(diff[:, 1] > 12),  # reddish
                    np.mean(diff[:, 0] > 8),  # whitish
                ]
            )
        return np.array(rows)

    train = plan_phantom(PhantomConfig(count=400, image_size=size, seed=0))
    test = plan_phantom(
        PhantomConfig(count=200, image_size=size, seed=1000, max_images_per_lesion=1)
    )
    labels = np.array([spec.malignant for spec in test])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features(train), np.array([spec.malignant for spec in train]))
    light = [reskin(spec, 1 + i % 2) for i, spec in enumerate(test)]
    dark = [reskin(spec, 5 + i % 2) for i, spec in enumerate(test)]
    auroc_light = roc_auc_score(labels, model.predict_proba(features(light))[:, 1])
    auroc_dark = roc_auc_score(labels, model.predict_proba(features(dark))[:, 1])
    assert auroc_light > 0.8
    assert auroc_dark > 0.6
    assert auroc_dark < auroc_light - 0.01


# -- the dataset on disk -----------------------------------------------------------------------


def _png_chunk_types(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, position = [], 8
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        types.append(data[position + 4 : position + 8])
        position += 12 + length
    return types


def test_dataset_files(tmp_path: Path) -> None:
    config = PhantomConfig(count=24, image_size=40, seed=13)
    summary = build_phantom_dataset(config, tmp_path / "set")
    out = tmp_path / "set"
    assert summary.count == 24 and sum(summary.counts_by_fst.values()) == 24
    assert json.loads((out / "phantom_config.json").read_text(encoding="utf-8"))["count"] == 24
    assert PhantomConfig.from_dict(json.loads((out / "phantom_config.json").read_text())) == config
    header = (out / "metadata.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert tuple(header) == METADATA_COLUMNS
    assert set(REQUIRED_COLUMNS) <= set(header)
    records = read_phantom_metadata(out)
    specs = plan_phantom(config)
    assert [r["image_id"] for r in records] == [s.image_id for s in specs]
    for record, spec in zip(records, specs, strict=True):
        path = out / record["file"]
        assert record["file"] == f"images/{spec.image_id}.png"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == "RGB" and image.size == (40, 40)
        assert not {b"tEXt", b"iTXt", b"zTXt", b"tIME"} & set(_png_chunk_types(path))
        assert record["fst"] == spec.fst and record["diagnosis"] == spec.diagnosis
        assert record["malignant"] is DIAGNOSES[spec.diagnosis].malignant
        assert record["colours"] == spec.colours and record["n_colours"] == len(spec.colours)
        assert record["border_segments"] == spec.border_segments
        assert abs(record["ita"] - float(ita_degrees(record["skin_L"], record["skin_b"]))) < 0.01
        assert 0 < record["lesion_fraction"] < 1
    assert not list(out.rglob("*.tmp"))


def test_dataset_is_byte_identical_and_grows_stably(tmp_path: Path) -> None:
    config = PhantomConfig(count=10, image_size=32, seed=14)
    build_phantom_dataset(config, tmp_path / "a")
    build_phantom_dataset(config, tmp_path / "b")
    build_phantom_dataset(dataclasses.replace(config, count=16), tmp_path / "c")
    for name in ("metadata.csv", "phantom_config.json"):
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)
    images_a = sorted((tmp_path / "a" / "images").iterdir())
    assert len(images_a) == 10
    for path in images_a:
        assert sha256_file(path) == sha256_file(tmp_path / "b" / "images" / path.name)
        assert sha256_file(path) == sha256_file(tmp_path / "c" / "images" / path.name)
    rows_a = (tmp_path / "a" / "metadata.csv").read_text().splitlines()
    rows_c = (tmp_path / "c" / "metadata.csv").read_text().splitlines()
    assert rows_c[: len(rows_a)] == rows_a and len(rows_c) == 17


# -- command line ------------------------------------------------------------------------------


def test_cli_writes_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli_main(
        ["--out", str(tmp_path), "--count", "6", "--size", "32", "--seed", "3",
         "--fst-mix", "1:1,6:1", "--diagnosis-mix", "nevus:1,melanoma:1"]
    )  # fmt: skip
    assert status == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "FST" in line and "I:3" in line and "VI:3" in line
    records = read_phantom_metadata(tmp_path / "metadata.csv")
    assert len(records) == 6 and {r["fst"] for r in records} == {1, 6}
    assert {r["diagnosis"] for r in records} <= {"nevus", "melanoma"}
    assert len(list((tmp_path / "images").glob("*.png"))) == 6


def test_cli_module_entry_point(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "generation.phantom",
            "--out",
            str(tmp_path),
            "--count",
            "2",
            "--size",
            "32",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "phantom: 2 images" in result.stdout
    assert (tmp_path / "metadata.csv").exists()


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["--size", "16"], "--size"),
        (["--count", "0"], "--count"),
        (["--count", "many"], "--count"),
        (["--seed", "-2"], "--seed"),
        (["--fst-mix", "1:abc"], "--fst-mix"),
        (["--fst-mix", "9:1"], "--fst-mix"),
        (["--diagnosis-mix", "scc:1"], "--diagnosis-mix"),
        (["--hair-probability", "2"], "--hair-probability"),
    ],
)
def test_cli_rejects_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], option: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--out", str(tmp_path / "out"), *arguments])
    assert exit_info.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

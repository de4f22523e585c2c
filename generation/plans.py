"""Generation plans: which (FST, diagnosis) images to make, in what order, with which seeds.

Model-agnostic: the same plans drive the from-scratch conditional model and the Stable
Diffusion path. A plan is a list of ``GenerationItem``; the index is the image's identity (its
file name and its row in the web app), the seed reproduces it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from validation.vocabulary import FST
from validation.vocabulary import diagnosis as lookup_diagnosis

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class GenerationItem:
    """One image to generate.

    Args:
        index (`int`): Position in the plan, unique; names the output file.
        fst (`int`): Fitzpatrick skin type 1-6.
        diagnosis (`str`): Shared diagnosis code.
        seed (`int`): Seed of the image's own noise generator (0 .. 2**63 - 1).
    """

    index: int
    fst: int
    diagnosis: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def derive_seed(base_seed: int, index: int) -> int:
    """A 63-bit seed for image ``index`` of a plan seeded ``base_seed``.

    ``sha256("fairderm:<base_seed>:<index>")`` truncated, so plans with neighbouring base seeds
    do not share noise (as ``base_seed + index`` would).

    Args:
        base_seed (`int`): The plan's seed.
        index (`int`): The item index.
    """
    digest = hashlib.sha256(f"fairderm:{base_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


def _check_labels(fsts: Iterable[int], diagnoses: Iterable[str]) -> tuple[list[int], list[str]]:
    fst_list: list[int] = []
    for value in fsts:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"fsts: {value!r} is not an integer skin type")
        try:
            fst_list.append(int(FST(value)))
        except ValueError:
            raise ValueError(f"fsts: {value!r} is not a Fitzpatrick skin type 1-6") from None
    diagnosis_list = list(diagnoses)
    for code in diagnosis_list:
        try:
            lookup_diagnosis(code)
        except ValueError as error:
            raise ValueError(f"diagnoses: {error}") from None
    if not fst_list:
        raise ValueError("fsts: no skin types given")
    if not diagnosis_list:
        raise ValueError("diagnoses: no diagnoses given")
    if len(set(fst_list)) != len(fst_list):
        raise ValueError(f"fsts: {fst_list} repeats a skin type")
    if len(set(diagnosis_list)) != len(diagnosis_list):
        raise ValueError(f"diagnoses: {diagnosis_list} repeats a code")
    return fst_list, diagnosis_list


def _check_seed(base_seed: int) -> None:
    if (
        isinstance(base_seed, bool)
        or not isinstance(base_seed, int)
        or not 0 <= base_seed <= MAX_SEED
    ):
        raise ValueError(f"base_seed: {base_seed!r} is not an integer in 0..2**63-1")


def balanced_plan(
    fsts: Sequence[int], diagnoses: Sequence[str], per_cell: int, base_seed: int
) -> list[GenerationItem]:
    """``per_cell`` images for every FST × diagnosis cell.

    Items are interleaved (round ``k`` holds the ``k``-th image of every cell, FST-major), so a
    run stopped part-way has as balanced an output as it can.

    Args:
        fsts (`Sequence[int]`): Skin types, e.g. ``[1, 2, 3, 4, 5, 6]``.
        diagnoses (`Sequence[str]`): Diagnosis codes.
        per_cell (`int`): Images per cell, >= 1.
        base_seed (`int`): Seed of the plan; item seeds are ``derive_seed(base_seed, index)``.

    Returns:
        ``len(fsts) * len(diagnoses) * per_cell`` items with indices ``0..n-1``.
    """
    fst_list, diagnosis_list = _check_labels(fsts, diagnoses)
    if isinstance(per_cell, bool) or not isinstance(per_cell, int) or per_cell < 1:
        raise ValueError(f"per_cell: {per_cell!r} is not an integer >= 1")
    _check_seed(base_seed)
    cells = [(f, d) for f in fst_list for d in diagnosis_list]
    return _interleave(cells, dict.fromkeys(cells, per_cell), base_seed)


def plan_from_counts(counts: Mapping[tuple[int, str], int], base_seed: int) -> list[GenerationItem]:
    """A plan with an explicit number of images per (fst, diagnosis) cell, interleaved.

    Args:
        counts (`Mapping[tuple[int, str], int]`): Images wanted per cell (0 skips the cell).
        base_seed (`int`): Seed of the plan.
    """
    if not counts:
        raise ValueError("counts: no cells given")
    _check_labels(sorted({f for f, _ in counts}), sorted({d for _, d in counts}))
    for cell, number in counts.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"counts: {number!r} for {cell} is not an integer >= 0")
    _check_seed(base_seed)
    return _interleave(list(counts), dict(counts), base_seed)


def _interleave(
    cells: list[tuple[int, str]], counts: dict[tuple[int, str], int], base_seed: int
) -> list[GenerationItem]:
    items: list[GenerationItem] = []
    for round_number in range(max(counts.values(), default=0)):
        for fst, code in cells:
            if round_number < counts[(fst, code)]:
                index = len(items)
                items.append(GenerationItem(index, fst, code, derive_seed(base_seed, index)))
    return items


def plan_summary(items: Sequence[GenerationItem]) -> dict[str, int]:
    """Images per cell, keyed ``"<fst>/<diagnosis>"``."""
    summary: dict[str, int] = {}
    for item in items:
        key = f"{item.fst}/{item.diagnosis}"
        summary[key] = summary.get(key, 0) + 1
    return summary


#: Samplers every generation path understands (the SD path accepts more; see stable_diffusion).
GENERATION_SAMPLERS = ("ddim", "dpmsolver++")


@dataclass(frozen=True)
class GenerationConfig:
    """A balanced synthetic set to generate from a trained model (the ``generate`` run's config).

    Args:
        per_cell (`int`, defaults to 10): Images per FST × diagnosis cell.
        fsts (`tuple[int, ...]`, defaults to I-VI): Skin types to generate.
        diagnoses (`tuple[str, ...]`, defaults to empty): Diagnosis codes; empty means every
            diagnosis the model was trained on.
        guidance_scale (`float`, defaults to 2.0): Classifier-free guidance (1 = none).
        num_inference_steps (`int`, defaults to 25): Sampler steps.
        sampler (`str`, defaults to ``"ddim"``): ``"ddim"`` or ``"dpmsolver++"``.
        batch_size (`int`, defaults to 32): Images per model call.
        seed (`int`, defaults to 0): The plan's base seed (each image's seed derives from it).
        dataset_name (`str`, defaults to empty): Name of the synthetic dataset; empty means
            ``synthetic-run-<run id>``.
    """

    per_cell: int = 10
    fsts: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    diagnoses: tuple[str, ...] = ()
    guidance_scale: float = 2.0
    num_inference_steps: int = 25
    sampler: str = "ddim"
    batch_size: int = 32
    seed: int = 0
    dataset_name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "fsts", tuple(self.fsts))
        object.__setattr__(self, "diagnoses", tuple(self.diagnoses))
        _check_labels(self.fsts, self.diagnoses or ("other",))
        for name, low, high in (
            ("per_cell", 1, 1_000_000),
            ("num_inference_steps", 1, 1000),
            ("batch_size", 1, 4096),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name}: {value!r} is not an integer in {low}..{high}")
        if isinstance(self.guidance_scale, bool) or not isinstance(
            self.guidance_scale, int | float
        ):
            raise ValueError(f"guidance_scale: {self.guidance_scale!r} is not a number")
        if not 0.0 <= float(self.guidance_scale) <= 30.0:
            raise ValueError(f"guidance_scale: {self.guidance_scale!r} is not in 0..30")
        if self.sampler not in GENERATION_SAMPLERS:
            raise ValueError(
                f"sampler: {self.sampler!r} is not one of {', '.join(GENERATION_SAMPLERS)}"
            )
        _check_seed(self.seed)
        if not isinstance(self.dataset_name, str) or len(self.dataset_name) > 200:
            raise ValueError("dataset_name: must be a string of at most 200 characters")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fsts"], data["diagnoses"] = list(self.fsts), list(self.diagnoses)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown config key(s) {', '.join(unknown)}")
        return cls(**dict(data))

    def plan(self, model_diagnoses: Sequence[str]) -> list[GenerationItem]:
        """The balanced plan for a model trained on ``model_diagnoses``."""
        diagnoses = list(self.diagnoses) or list(model_diagnoses)
        missing = [code for code in diagnoses if code not in model_diagnoses]
        if missing:
            raise ValueError(f"diagnoses: the model was not trained on {', '.join(missing)}")
        return balanced_plan(self.fsts, diagnoses, self.per_cell, self.seed)

"""Generation plans: which (FST, diagnosis) images to make, in what order, with which seeds.

Model-agnostic: the same plans drive the from-scratch conditional model and the Stable
Diffusion path. A plan is a list of ``GenerationItem``; the index is the image's identity (its
file name and its row in the web app), the seed reproduces it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from generation.fast_config import FastPathConfig
from generation.phantom.allocation import largest_remainder
from validation.checks import check_float, check_int
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


def _check_labels(
    fsts: Iterable[int], diagnoses: Iterable[str], fsts_name: str = "fsts"
) -> tuple[list[int], list[str]]:
    """Check skin types and diagnosis codes; errors name ``fsts_name`` (``share_fsts``, ...)."""
    fst_list: list[int] = []
    for value in fsts:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{fsts_name}: {value!r} is not an integer skin type")
        try:
            fst_list.append(int(FST(value)))
        except ValueError:
            raise ValueError(f"{fsts_name}: {value!r} is not a Fitzpatrick skin type 1-6") from None
    diagnosis_list = list(diagnoses)
    for code in diagnosis_list:
        try:
            lookup_diagnosis(code)
        except ValueError as error:
            raise ValueError(f"diagnoses: {error}") from None
    if not fst_list:
        raise ValueError(f"{fsts_name}: no skin types given")
    if not diagnosis_list:
        raise ValueError("diagnoses: no diagnoses given")
    if len(set(fst_list)) != len(fst_list):
        raise ValueError(f"{fsts_name}: {fst_list} repeats a skin type")
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
GENERATION_MODES: tuple[str, ...] = ("txt2img", "img2img")
GENERATION_SAMPLERS = ("ddim", "dpmsolver++")

#: How a generation config says how many images to make (see ``target_counts``).
PLAN_RULES = ("per_cell", "per_fst", "fst_share", "per_malignancy")
SPREADS = ("uniform", "real")

Cell = tuple[int, str]


def target_counts(
    rule: str,
    count: int,
    fsts: Sequence[int],
    diagnoses: Sequence[str],
    real_counts: Mapping[Cell, int] | None = None,
    *,
    share: float = 0.25,
    share_fsts: Sequence[int] = (5, 6),
    spread: str = "uniform",
) -> dict[Cell, int]:
    """How many synthetic images each FST × diagnosis cell gets under one of four rules.

    - ``per_cell``: ``count`` images in every cell ("100 per FST × diagnosis").
    - ``per_fst``: ``count`` images per skin type, spread over the diagnoses ("10k per FST").
    - ``fst_share``: enough images of ``share_fsts`` that they make up ``share`` of the
      combined real + synthetic set ("bring FST V-VI to 25%"): with ``R`` real images in all
      and ``R_g`` of them in the group, ``S = ceil((share·R − R_g) / (1 − share))`` synthetic
      images (0 when the share is already reached), spread over the group's skin types
      evenly, then over the diagnoses.
    - ``per_malignancy``: ``count`` benign and ``count`` malignant images ("30k / 30k"),
      each spread evenly over the skin types, then over that class's diagnoses (diagnoses of
      unknown malignancy get none).

    A total is split with largest-remainder rounding, over diagnoses evenly
    (``spread="uniform"``) or in proportion to the real images' diagnosis mix
    (``spread="real"``).

    Args:
        rule (`str`): One of ``PLAN_RULES``.
        count (`int`): Images per cell, per FST or per malignancy class (unused by ``fst_share``).
        fsts (`Sequence[int]`), diagnoses (`Sequence[str]`): The cells the model can make.
        real_counts (`Mapping[tuple[int, str], int]`, *optional*): Real images per cell of the
            reference dataset; required by ``fst_share`` and by ``spread="real"``.
        share (`float`), share_fsts (`Sequence[int]`): The ``fst_share`` target.
        spread (`str`): ``"uniform"`` or ``"real"``.

    Returns:
        Images per cell (cells with 0 included), summing to the rule's total.
    """
    fst_list, diagnosis_list = _check_labels(fsts, diagnoses)
    if rule not in PLAN_RULES:
        raise ValueError(f"rule: {rule!r} is not one of {', '.join(PLAN_RULES)}")
    if spread not in SPREADS:
        raise ValueError(f"spread: {spread!r} is not one of {', '.join(SPREADS)}")
    real = dict(real_counts or {})
    if (rule == "fst_share" or spread == "real") and not real:
        raise ValueError(
            f"real_counts: rule {rule!r} with spread {spread!r} needs the real dataset's counts"
        )
    counts = {(f, d): 0 for f in fst_list for d in diagnosis_list}

    def split_over_diagnoses(fst: int, total: int, codes: list[str]) -> None:
        if spread == "real" and sum(real.get((f, d), 0) for f in fst_list for d in codes) > 0:
            weights = [float(sum(real.get((f, d), 0) for f in fst_list)) for d in codes]
        else:
            weights = [1.0] * len(codes)
        for code, number in zip(codes, largest_remainder(weights, total), strict=True):
            counts[(fst, code)] += number

    if rule == "per_cell":
        return dict.fromkeys(counts, count)
    if rule == "per_fst":
        for fst in fst_list:
            split_over_diagnoses(fst, count, diagnosis_list)
        return counts
    if rule == "per_malignancy":
        for malignant in (False, True):
            codes = [d for d in diagnosis_list if lookup_diagnosis(d).malignant is malignant]
            if not codes:
                raise ValueError(f"diagnoses: none is {'malignant' if malignant else 'benign'}")
            for fst, total in zip(
                fst_list, largest_remainder([1.0] * len(fst_list), count), strict=True
            ):
                split_over_diagnoses(fst, total, codes)
        return counts
    group = [f for f in fst_list if f in set(share_fsts)]
    if not group:
        raise ValueError(
            f"share_fsts: none of {list(share_fsts)} is among the generated skin types"
        )
    if not 0.0 < share < 1.0:
        raise ValueError(f"share: {share!r} is not strictly between 0 and 1")
    real_total = sum(real.values())
    real_group = sum(n for (f, _), n in real.items() if f in set(share_fsts))
    needed = max(0, math.ceil((share * real_total - real_group) / (1.0 - share) - 1e-9))
    for fst, total in zip(group, largest_remainder([1.0] * len(group), needed), strict=True):
        split_over_diagnoses(fst, total, diagnosis_list)
    return counts


@dataclass(frozen=True)
class GenerationConfig:
    """A synthetic set to generate from a trained model (the ``generate`` run's config).

    Args:
        rule (`str`, defaults to ``"per_cell"``): How many images to make; see ``target_counts``
            (``per_cell``, ``per_fst``, ``fst_share`` or ``per_malignancy``).
        count (`int`, defaults to 10): Images per cell, per FST or per malignancy class.
        share (`float`, defaults to 0.25), share_fsts (`tuple[int, ...]`, defaults to V-VI):
            The ``fst_share`` target: the share of ``share_fsts`` in real + synthetic images.
        spread (`str`, defaults to ``"uniform"``): How totals are spread over diagnoses:
            evenly, or like the real dataset (``"real"``).
        fsts (`tuple[int, ...]`, defaults to I-VI): Skin types to generate.
        diagnoses (`tuple[str, ...]`, defaults to empty): Diagnosis codes; empty means every
            diagnosis the model was trained on.
        guidance_scale (`float`, defaults to 2.0): Classifier-free guidance (1 = none).
        num_inference_steps (`int`, defaults to 25): Sampler steps.
        sampler (`str`, defaults to ``"ddim"``): ``"ddim"`` or ``"dpmsolver++"``.
        batch_size (`int`, defaults to 32): Images per model call.
        seed (`int`, defaults to 0): The plan's base seed (each image's seed derives from it).
        tone_tolerance (`int` or `None`, defaults to `None`): With a number, the tone-fidelity
            gate replaces images whose ITA-estimated FST is further than this many types from
            the requested one (up to ``tone_retries`` new seeds each); `None` only reports.
        tone_retries (`int`, defaults to 2): Redraws per rejected image.
        shards (`int`, defaults to 1): Split the plan into this many shards (image ``i`` goes to
            shard ``i % shards``) that free workers generate in parallel.
        dataset_name (`str`, defaults to empty): Name of the synthetic dataset; empty means
            ``synthetic-run-<run id>``.
        mode (`str`, defaults to ``"txt2img"``): Stable Diffusion models only: ``"img2img"``
            starts each image from a real image of the same diagnosis on ``source_fsts``.
        strength (`float`, defaults to 0.6): img2img strength in (0, 1] (1 ignores the source).
        source_fsts (`tuple[int, ...]`, defaults to I-III): Skin types img2img starts from.
        dtype, channels_last, fuse_lora, fuse_qkv, compile_mode, compile_vae, cuda_graphs,
        fp8, vae_batch_size: Stable Diffusion models only: how the pipeline runs, see
            ``generation.fast_config.FastPathConfig`` (the defaults are the plain fp32 path;
            ``FastPathConfig.gpu()`` lists the fast settings for a CUDA GPU).
        writer_threads (`int`, defaults to 4): Threads encoding and writing the PNGs while the
            next batch is sampled (any model).
    """

    rule: str = "per_cell"
    count: int = 10
    share: float = 0.25
    share_fsts: tuple[int, ...] = (5, 6)
    spread: str = "uniform"
    fsts: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    diagnoses: tuple[str, ...] = ()
    guidance_scale: float = 2.0
    num_inference_steps: int = 25
    sampler: str = "ddim"
    batch_size: int = 32
    seed: int = 0
    tone_tolerance: int | None = None
    tone_retries: int = 2
    shards: int = 1
    dataset_name: str = ""
    mode: str = "txt2img"
    strength: float = 0.6
    source_fsts: tuple[int, ...] = (1, 2, 3)
    # The fast-path settings, defaulting to FastPathConfig's own (the plain fp32 path).
    dtype: str = FastPathConfig.dtype
    channels_last: bool = FastPathConfig.channels_last
    fuse_lora: bool = FastPathConfig.fuse_lora
    fuse_qkv: bool = FastPathConfig.fuse_qkv
    compile_mode: str = FastPathConfig.compile_mode
    compile_vae: bool = FastPathConfig.compile_vae
    cuda_graphs: bool = FastPathConfig.cuda_graphs
    fp8: bool = FastPathConfig.fp8
    vae_batch_size: int = FastPathConfig.vae_batch_size
    writer_threads: int = FastPathConfig.writer_threads

    #: The fields that ``fast_path`` passes on to ``FastPathConfig``.
    FAST_FIELDS: ClassVar[tuple[str, ...]] = (
        "dtype",
        "channels_last",
        "fuse_lora",
        "fuse_qkv",
        "compile_mode",
        "compile_vae",
        "cuda_graphs",
        "fp8",
        "vae_batch_size",
        "writer_threads",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "fsts", tuple(self.fsts))
        object.__setattr__(self, "source_fsts", tuple(self.source_fsts))
        _check_labels(self.source_fsts, ("other",), "source_fsts")
        if self.mode not in GENERATION_MODES:
            raise ValueError(f"mode: {self.mode!r} is not one of {', '.join(GENERATION_MODES)}")
        check_float("strength", self.strength, 0.01, 1.0)
        object.__setattr__(self, "diagnoses", tuple(self.diagnoses))
        object.__setattr__(self, "share_fsts", tuple(self.share_fsts))
        _check_labels(self.fsts, self.diagnoses or ("other",))
        _check_labels(self.share_fsts, ("other",), "share_fsts")
        if self.rule not in PLAN_RULES:
            raise ValueError(f"rule: {self.rule!r} is not one of {', '.join(PLAN_RULES)}")
        if self.spread not in SPREADS:
            raise ValueError(f"spread: {self.spread!r} is not one of {', '.join(SPREADS)}")
        for name, low, high in (
            ("count", 1, 10_000_000),
            ("num_inference_steps", 1, 1000),
            ("batch_size", 1, 4096),
            ("tone_retries", 0, 20),
            ("shards", 1, 1024),
            # Named here as "seed"; _check_seed below would call it base_seed.
            ("seed", 0, MAX_SEED),
        ):
            check_int(name, getattr(self, name), low, high)
        if self.tone_tolerance is not None:
            check_int("tone_tolerance", self.tone_tolerance, 0, 5)
        check_float("guidance_scale", self.guidance_scale, 0.0, 30.0)
        check_float("share", self.share, 0.0, 1.0)
        if self.rule == "fst_share" and not 0.0 < self.share < 1.0:
            raise ValueError(f"share: {self.share!r} is not strictly between 0 and 1")
        if self.sampler not in GENERATION_SAMPLERS:
            raise ValueError(
                f"sampler: {self.sampler!r} is not one of {', '.join(GENERATION_SAMPLERS)}"
            )
        _check_seed(self.seed)
        if not isinstance(self.dataset_name, str) or len(self.dataset_name) > 200:
            raise ValueError("dataset_name: must be a string of at most 200 characters")
        self.fast_path()  # its errors name these fields too

    def fast_path(self, compile_cache_dir: str = "") -> FastPathConfig:
        """The ``FastPathConfig`` of these settings (``compile_cache_dir`` is the machine's)."""
        return FastPathConfig(
            **{name: getattr(self, name) for name in self.FAST_FIELDS},
            compile_cache_dir=compile_cache_dir,
        )

    @property
    def uses_fast_path(self) -> bool:
        """Whether any Stable-Diffusion-only speed setting differs from the plain path."""
        plain = FastPathConfig()
        return any(
            getattr(self, name) != getattr(plain, name)
            for name in self.FAST_FIELDS
            if name != "writer_threads"
        )

    @property
    def needs_real_counts(self) -> bool:
        return self.rule == "fst_share" or self.spread == "real"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("fsts", "diagnoses", "share_fsts", "source_fsts"):
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown config key(s) {', '.join(unknown)}")
        return cls(**dict(data))

    def counts(
        self, model_diagnoses: Sequence[str], real_counts: Mapping[Cell, int] | None = None
    ) -> dict[Cell, int]:
        """Images per cell for a model trained on ``model_diagnoses`` (see ``target_counts``)."""
        diagnoses = list(self.diagnoses) or list(model_diagnoses)
        missing = [code for code in diagnoses if code not in model_diagnoses]
        if missing:
            raise ValueError(f"diagnoses: the model was not trained on {', '.join(missing)}")
        return target_counts(
            self.rule,
            self.count,
            self.fsts,
            diagnoses,
            real_counts,
            share=self.share,
            share_fsts=self.share_fsts,
            spread=self.spread,
        )

    def plan(
        self, model_diagnoses: Sequence[str], real_counts: Mapping[Cell, int] | None = None
    ) -> list[GenerationItem]:
        """The interleaved plan (see ``plan_from_counts``); empty when nothing is needed."""
        counts = self.counts(model_diagnoses, real_counts)
        if not any(counts.values()):
            return []
        return plan_from_counts(counts, self.seed)

"""A tiny Stable-Diffusion-architecture pipeline built offline, for tests and demos.

No weights can be downloaded in FairDerm's test environments, so the real loading code
(``generation.stable_diffusion.load_sd_pipeline``: ``from_pretrained``, hub cache paths) is
exercised on a pipeline that this module builds from configs: the same classes as SD 1.5
(``UNet2DConditionModel``, ``AutoencoderKL``, ``CLIPTextModel``, ``CLIPTokenizer``,
``DDIMScheduler``) with about 2 M random parameters, and a CLIP-style BPE tokenizer trained
here on FairDerm's own prompt vocabulary.

Its weights are random: images from it are noise. Every folder written by :func:`save_tiny_sd`
holds the marker file ``FAIRDERM_STANDIN.json``, which ``weights_provenance`` detects, so its
results are always labelled as stand-in results.

Command line: ``python -m generation.tiny_sd --out DIR [--seed N] [--stage-as org/name]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from generation.stable_diffusion import STANDIN_MARKER, hash_weight_files, hub_cache_dir
from validation.files import (
    TEMP_SUFFIX,
    atomic_directory,
    atomic_path,
    atomic_write_text,
    sha256_file,
)
from validation.vocabulary import ALL_FST, DIAGNOSES

#: Bump when the build code changes what a given config produces; folders from another
#: version are not reused by :func:`save_tiny_sd`.
KIT_VERSION = 1

#: Sequence length of SD 1.x/2.x prompts; the pipeline pads every prompt to it.
MODEL_MAX_LENGTH = 77

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"

# CLIP's text normalisation and pre-tokenisation (the same as transformers' CLIPTokenizer), so
# the merges learned here split text exactly as the loaded tokenizer will.
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_END_OF_WORD = "</w>"

_STANDIN_NOTE = (
    "Random weights built offline by generation.tiny_sd for tests and demos. This is NOT a "
    "real Stable Diffusion model: its images are noise, and no metric computed with it may be "
    "reported as a result of a real model."
)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    return value


def _channels(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ValueError(
            f"{name}: must be a non-empty sequence of positive integers, got {value!r}"
        )
    return tuple(_positive_int(name, item) for item in value)


@dataclass(frozen=True)
class TinySDConfig:
    """Architecture and seed of the tiny stand-in pipeline.

    The defaults give a 64×64 pipeline of about 2.2 M parameters (8 MB on disk) that samples
    four images at 10 steps in about a second on two CPU cores.

    Args:
        image_size (`int`, defaults to 64): Image side in pixels. Must be divisible by the VAE's
            downsampling (``2 ** (len(vae_channels) - 1)``) times the UNet's
            (``2 ** (len(unet_channels) - 1)``).
        unet_channels (`tuple[int, ...]`, defaults to `(32, 64)`): UNet ``block_out_channels``;
            the first block has no attention, the others cross-attend to the prompt.
        unet_layers_per_block (`int`, defaults to 2): UNet ResNet layers per block.
        unet_attention_heads (`int`, defaults to 2): Attention heads per UNet transformer
            (diffusers' ``attention_head_dim``, which SD uses as a head count); must divide
            every UNet width.
        vae_channels (`tuple[int, ...]`, defaults to `(32, 64)`): VAE ``block_out_channels``.
        vae_layers_per_block (`int`, defaults to 1): VAE ResNet layers per block.
        latent_channels (`int`, defaults to 4): VAE latent channels (4 as in SD).
        norm_num_groups (`int`, defaults to 32): GroupNorm groups; must divide every width.
        cross_attention_dim (`int`, defaults to 32): UNet cross-attention width; must equal
            ``text_hidden_size`` (SD feeds the text encoder's states in directly).
        text_hidden_size (`int`, defaults to 32): CLIP text encoder width.
        text_layers (`int`, defaults to 5): CLIP text encoder layers.
        text_attention_heads (`int`, defaults to 4): Must divide ``text_hidden_size``.
        text_intermediate_size (`int`, defaults to 37): CLIP MLP width.
        tokenizer_max_merges (`int`, defaults to 1000): Upper bound on the BPE merges learned
            from the prompt corpus (training stops earlier once every corpus word is one token).
        seed (`int`, defaults to 0): Seed of the random weights; the same config gives
            identical weight files.
    """

    image_size: int = 64
    unet_channels: tuple[int, ...] = (32, 64)
    unet_layers_per_block: int = 2
    unet_attention_heads: int = 2
    vae_channels: tuple[int, ...] = (32, 64)
    vae_layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 32
    cross_attention_dim: int = 32
    text_hidden_size: int = 32
    text_layers: int = 5
    text_attention_heads: int = 4
    text_intermediate_size: int = 37
    tokenizer_max_merges: int = 1000
    seed: int = 0
    sd_block_layout: bool = False
    text_vocab_size: int = 0

    def __post_init__(self) -> None:
        for name in ("unet_channels", "vae_channels"):
            object.__setattr__(self, name, _channels(name, getattr(self, name)))
        for spec in fields(self):
            if spec.name in (
                "unet_channels", "vae_channels", "seed", "sd_block_layout", "text_vocab_size"
            ):  # fmt: skip
                continue
            _positive_int(spec.name, getattr(self, spec.name))
        if not isinstance(self.sd_block_layout, bool):
            raise ValueError(
                f"sd_block_layout: must be true or false, got {self.sd_block_layout!r}"
            )
        if (
            isinstance(self.text_vocab_size, bool)
            or not isinstance(self.text_vocab_size, int)
            or self.text_vocab_size < 0
        ):
            raise ValueError(
                f"text_vocab_size: must be 0 (the tokenizer's size) or a positive integer, "
                f"got {self.text_vocab_size!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {self.seed!r}")
        downsampling = self.vae_scale_factor * 2 ** (len(self.unet_channels) - 1)
        if self.image_size % downsampling:
            raise ValueError(
                f"image_size: must be a multiple of {downsampling} (VAE x UNet downsampling), "
                f"got {self.image_size}"
            )
        for name in ("unet_channels", "vae_channels"):
            widths = getattr(self, name)
            if any(width % self.norm_num_groups for width in widths):
                raise ValueError(
                    f"{name}: every width must be divisible by norm_num_groups="
                    f"{self.norm_num_groups}, got {widths}"
                )
        if any(width % self.unet_attention_heads for width in self.unet_channels):
            raise ValueError(
                f"unet_attention_heads: must divide every UNet width {self.unet_channels}, "
                f"got {self.unet_attention_heads}"
            )
        if self.cross_attention_dim != self.text_hidden_size:
            raise ValueError(
                f"cross_attention_dim: must equal text_hidden_size ({self.text_hidden_size}), "
                f"got {self.cross_attention_dim}"
            )
        if self.text_hidden_size % self.text_attention_heads:
            raise ValueError(
                f"text_attention_heads: must divide text_hidden_size ({self.text_hidden_size}), "
                f"got {self.text_attention_heads}"
            )

    @classmethod
    def sd15(cls, **overrides: Any) -> TinySDConfig:
        """The Stable Diffusion 1.5 architecture (860 M UNet parameters), random weights.

        For throughput and memory measurements, which do not depend on the weights' values:
        the same layers, widths and text encoder as ``runwayml/stable-diffusion-v1-5``, with
        the kit's tokenizer in front of a 49,408-row embedding table.
        """
        values: dict[str, Any] = {
            "image_size": 512,
            "unet_channels": (320, 640, 1280, 1280),
            "unet_layers_per_block": 2,
            "unet_attention_heads": 8,
            "vae_channels": (128, 256, 512, 512),
            "vae_layers_per_block": 2,
            "cross_attention_dim": 768,
            "text_hidden_size": 768,
            "text_layers": 12,
            "text_attention_heads": 12,
            "text_intermediate_size": 3072,
            "sd_block_layout": True,
            "text_vocab_size": 49408,
        }
        return cls(**{**values, **overrides})

    @property
    def vae_scale_factor(self) -> int:
        """How many pixels one latent cell spans per side."""
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        """The UNet's ``sample_size``."""
        return self.image_size // self.vae_scale_factor

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinySDConfig:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on unknown fields."""
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown field(s) {', '.join(unknown)}")
        return cls(**data)


def tiny_tokenizer_corpus() -> list[str]:
    """The prompts the tiny tokenizer learns its merges from.

    Built from the shared vocabulary (``validation.vocabulary``): FairDerm's prompt template
    ("dermoscopy image of a {diagnosis} on fitzpatrick skin type {I..VI} skin") for every
    diagnosis and skin type, plus the phrasings of peer systems (benign/malignant, light/brown/
    dark skin tone, "an image of X, a skin disease").
    """
    labels: list[str] = []
    for entry in DIAGNOSES.values():
        label = entry.label.lower()
        labels.append(label)
        labels.extend(part.strip() for part in label.split("/") if "/" in label)
    corpus: list[str] = []
    for label in labels:
        article = "an" if label[0] in "aeiou" else "a"
        for fst in ALL_FST:
            corpus.append(
                f"dermoscopy image of {article} {label} on fitzpatrick skin type "
                f"{fst.roman.lower()} skin"
            )
            corpus.append(
                f"clinical photo of {article} {label}, fitzpatrick type {int(fst)}, fst {fst.roman}"
            )
        corpus.append(f"an image of {label}, a skin disease")
    for kind in ("benign", "malignant"):
        for tone in ("light", "lighter", "brown", "dark", "darker"):
            corpus.append(f"a dermoscopic image of a {kind} skin lesion on {tone} skin tone")
    corpus.append("close-up of a pigmented lesion, high quality, sharp focus, no hair")
    return corpus


def _clip_bpe() -> Tokenizer:
    tokenizer = Tokenizer(BPE(continuing_subword_prefix="", end_of_word_suffix=_END_OF_WORD))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return tokenizer


def build_tiny_tokenizer(
    folder: str | os.PathLike[str],
    corpus: Iterable[str] | None = None,
    *,
    max_merges: int = 1000,
) -> CLIPTokenizer:
    """Train a CLIP-style BPE tokenizer on a small corpus and load it as a `CLIPTokenizer`.

    Writes ``vocab.json`` (the 256 byte-level symbols, the same with ``</w>``, one entry per
    learned merge, then ``<|startoftext|>`` and ``<|endoftext|>``, as in CLIP's own vocabulary)
    and ``merges.txt`` into ``folder``, then loads them with ``CLIPTokenizer.from_pretrained``
    (in transformers 5, ``CLIPTokenizer(vocab_file=..., merges_file=...)`` silently ignores the
    files and yields a 2-token vocabulary). Any text encodes, byte by byte at worst; the
    corpus words become single tokens.

    Args:
        folder (`str` or `os.PathLike`): Where to write the two files (created if missing;
            existing files are replaced).
        corpus (`Iterable[str]`, *optional*): Training text; defaults to
            :func:`tiny_tokenizer_corpus`.
        max_merges (`int`, *optional*, defaults to 1000): Upper bound on the learned merges.

    Returns:
        `CLIPTokenizer`: With ``model_max_length=77`` and ``<|endoftext|>`` as pad token.
    """
    _positive_int("max_merges", max_merges)
    texts = list(tiny_tokenizer_corpus() if corpus is None else corpus)
    if not texts or not any(text.strip() for text in texts):
        raise ValueError("corpus: must contain some text")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = BpeTrainer(
        vocab_size=2 * len(alphabet) + max_merges,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=alphabet,
        continuing_subword_prefix="",
        end_of_word_suffix=_END_OF_WORD,
    )
    bpe = _clip_bpe()
    bpe.train_from_iterator(texts, trainer)
    merges: list[tuple[str, str]] = [
        tuple(pair.split(" ", 1)) if isinstance(pair, str) else (pair[0], pair[1])
        for pair in json.loads(bpe.to_str())["model"]["merges"]
    ][:max_merges]

    tokens = alphabet + [symbol + _END_OF_WORD for symbol in alphabet]
    seen = set(tokens)
    for left, right in merges:
        merged = left + right
        if merged not in seen:
            seen.add(merged)
            tokens.append(merged)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}

    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    merges_text = "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in merges)
    atomic_write_text(target / "merges.txt", merges_text)
    return CLIPTokenizer.from_pretrained(target, model_max_length=MODEL_MAX_LENGTH)


def _corpus_sha256(corpus: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(corpus).encode("utf-8")).hexdigest()


def build_tiny_sd_pipeline(config: TinySDConfig | None = None) -> StableDiffusionPipeline:
    """Build the tiny pipeline in memory, with deterministic random weights.

    The global torch RNG state is left as it was.

    Args:
        config (`TinySDConfig`, *optional*): Architecture and seed; defaults to ``TinySDConfig()``.

    Returns:
        `StableDiffusionPipeline`: On the CPU in float32, safety checker off, DDIM scheduler with
        SD's noise schedule (scaled linear 0.00085-0.012, ``steps_offset=1``).
    """
    config = TinySDConfig() if config is None else config
    with tempfile.TemporaryDirectory(prefix="fairderm-tiny-tokenizer-") as scratch:
        tokenizer = build_tiny_tokenizer(scratch, max_merges=config.tokenizer_max_merges)

    n_unet = len(config.unet_channels)
    n_vae = len(config.vae_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = UNet2DConditionModel(
            sample_size=config.latent_size,
            in_channels=config.latent_channels,
            out_channels=config.latent_channels,
            block_out_channels=config.unet_channels,
            layers_per_block=config.unet_layers_per_block,
            down_block_types=(
                ("CrossAttnDownBlock2D",) * (n_unet - 1) + ("DownBlock2D",)
                if config.sd_block_layout
                else ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n_unet - 1)
            ),
            up_block_types=(
                ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n_unet - 1)
                if config.sd_block_layout
                else ("CrossAttnUpBlock2D",) * (n_unet - 1) + ("UpBlock2D",)
            ),
            cross_attention_dim=config.cross_attention_dim,
            attention_head_dim=config.unet_attention_heads,
            norm_num_groups=config.norm_num_groups,
        )
        torch.manual_seed(config.seed + 1)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=config.vae_channels,
            down_block_types=("DownEncoderBlock2D",) * n_vae,
            up_block_types=("UpDecoderBlock2D",) * n_vae,
            layers_per_block=config.vae_layers_per_block,
            latent_channels=config.latent_channels,
            norm_num_groups=config.norm_num_groups,
            sample_size=config.image_size,
        )
        torch.manual_seed(config.seed + 2)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=max(config.text_vocab_size, len(tokenizer)),
                hidden_size=config.text_hidden_size,
                intermediate_size=config.text_intermediate_size,
                num_hidden_layers=config.text_layers,
                num_attention_heads=config.text_attention_heads,
                max_position_embeddings=MODEL_MAX_LENGTH,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _marker_matches(folder: Path, config: TinySDConfig) -> bool:
    """Whether ``folder`` is a complete stand-in built by this kit version from ``config``."""
    marker_path = folder / STANDIN_MARKER
    if not (marker_path.is_file() and (folder / "model_index.json").is_file()):
        return False
    try:
        marker = json.loads(marker_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("kit_version") == KIT_VERSION
        and marker.get("config") == config.to_dict()
        and marker.get("tokenizer_corpus_sha256") == _corpus_sha256(tiny_tokenizer_corpus())
    )


def _library_versions() -> dict[str, str]:
    import diffusers
    import tokenizers
    import transformers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def save_tiny_sd(folder: str | os.PathLike[str], config: TinySDConfig | None = None) -> Path:
    """Write the tiny pipeline as a standard diffusers folder, marked as a stand-in.

    The folder gets ``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
    ``tokenizer/``, ``scheduler/`` and the marker ``FAIRDERM_STANDIN.json`` (config, kit
    version, weight hash, library versions and a note). It is built in a temporary folder
    beside ``folder`` and renamed into place, so ``folder`` is either absent or complete.
    Calling again with the same config reuses the existing folder.

    Args:
        folder (`str` or `os.PathLike`): Destination; must not exist, be empty, or hold a
            stand-in built from the same config.
        config (`TinySDConfig`, *optional*): Defaults to ``TinySDConfig()``.

    Returns:
        `Path`: ``folder``.

    Raises:
        `FileExistsError`: If ``folder`` holds anything else (it is never overwritten).
    """
    config = TinySDConfig() if config is None else config
    target = Path(folder)
    if target.is_dir() and _marker_matches(target, config):
        return target
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if target.exists():
        raise FileExistsError(
            f"folder: {target} already exists and is not a stand-in built from this config "
            f"(kit version {KIT_VERSION}); remove it or choose another folder"
        )
    try:
        with atomic_directory(target) as scratch:
            build_tiny_sd_pipeline(config).save_pretrained(scratch)
            # transformers 5 saves only tokenizer.json; add CLIP's vocab.json + merges.txt as in
            # real SD repos (same training, so identical tokens) for older readers.
            build_tiny_tokenizer(scratch / "tokenizer", max_merges=config.tokenizer_max_merges)
            weights_sha256, _ = hash_weight_files(scratch)
            marker = {
                "fairderm_standin": True,
                "kind": "tiny-stable-diffusion",
                "kit_version": KIT_VERSION,
                "note": _STANDIN_NOTE,
                "config": config.to_dict(),
                "tokenizer_corpus_sha256": _corpus_sha256(tiny_tokenizer_corpus()),
                "weights_sha256": weights_sha256,
                "library_versions": _library_versions(),
            }
            (scratch / STANDIN_MARKER).write_text(
                json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
    except OSError:
        # Another process may have finished the same folder first.
        if target.is_dir() and _marker_matches(target, config):
            return target
        raise
    return target


def stage_in_hf_cache(
    folder: str | os.PathLike[str],
    repo_id: str,
    hf_home: str | os.PathLike[str] | None = None,
) -> Path:
    """Place a diffusers folder in the Hugging Face hub cache, as if downloaded as ``repo_id``.

    Writes the standard layout, ``models--{org}--{name}/blobs/<sha256>``,
    ``snapshots/<revision>/...`` (relative symlinks to the blobs, or copies where symlinks are
    unavailable) and ``refs/main``, so that ``load_sd_pipeline(repo_id)`` finds it with
    ``HF_HUB_OFFLINE=1``. The revision is derived from the files' content, so staging the same
    folder twice is a no-op. This is how tests exercise the hub-id code path offline; it also
    places real weights copied from another machine.

    Args:
        folder (`str` or `os.PathLike`): A diffusers folder (with ``model_index.json``).
        repo_id (`str`): The id to stage it as, ``"org/name"``.
        hf_home (`str` or `os.PathLike`, *optional*): Cache root; the hub cache is
            ``hf_home/hub``. Defaults to the current ``HF_HUB_CACHE`` / ``HF_HOME``.

    Returns:
        `Path`: The snapshot folder.

    Raises:
        `ValueError`: If ``repo_id`` is not of the form ``org/name``.
        `FileNotFoundError`: If ``folder`` is not a diffusers folder.
    """
    source = Path(folder)
    if not (source / "model_index.json").is_file():
        raise FileNotFoundError(
            f"folder: {source} has no model_index.json (not a diffusers folder)"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"repo_id: {error}") from None
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id: must be 'org/name', got {repo_id!r}")

    cache = Path(hf_home) / "hub" if hf_home is not None else hub_cache_dir()
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    files = sorted(
        path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file() and not path.name.endswith(TEMP_SUFFIX)
    )
    hashes = {relative: sha256_file(source / relative) for relative in files}
    revision = hashlib.sha1(  # a 40-hex id like a git commit; not used for security
        "".join(f"{relative}\t{hashes[relative]}\n" for relative in files).encode(),
        usedforsecurity=False,
    ).hexdigest()

    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for relative, digest in hashes.items():
        blob = blobs / digest
        if not blob.exists():
            with atomic_path(blob) as tmp:
                shutil.copyfile(source / relative, tmp)

    snapshot = repo_dir / "snapshots" / revision
    if not snapshot.is_dir():
        try:
            with atomic_directory(snapshot) as scratch:
                for relative, digest in hashes.items():
                    link = scratch / relative
                    link.parent.mkdir(parents=True, exist_ok=True)
                    blob_from_link = os.path.relpath(blobs / digest, (snapshot / relative).parent)
                    try:
                        link.symlink_to(blob_from_link)
                    except OSError:
                        shutil.copyfile(blobs / digest, link)
        except OSError:
            if not snapshot.is_dir():  # else another process staged it first
                raise
    atomic_write_text(repo_dir / "refs" / "main", revision)
    return snapshot


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m generation.tiny_sd``: write the stand-in folder and print its provenance."""
    from generation.stable_diffusion import weights_provenance

    parser = argparse.ArgumentParser(
        prog="python -m generation.tiny_sd",
        description="Write FairDerm's tiny random-weight Stable Diffusion stand-in (offline).",
    )
    parser.add_argument("--out", required=True, type=Path, help="destination folder")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    parser.add_argument("--image-size", type=int, default=64, help="image side (default 64)")
    parser.add_argument("--stage-as", metavar="ORG/NAME", help="also stage it in the hub cache")
    parser.add_argument(
        "--hf-home", type=Path, help="cache root for --stage-as (default: $HF_HOME)"
    )
    args = parser.parse_args(argv)
    try:
        config = TinySDConfig(seed=args.seed, image_size=args.image_size)
        folder = save_tiny_sd(args.out, config)
        staged = stage_in_hf_cache(folder, args.stage_as, args.hf_home) if args.stage_as else None
    except (ValueError, OSError) as error:
        parser.error(str(error))
    report = weights_provenance(folder).to_dict()
    if staged is not None:
        report["staged_as"] = {"repo_id": args.stage_as, "snapshot": str(staged)}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

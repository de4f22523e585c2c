"""The class-conditional UNet and the (FST, diagnosis) <-> class-index codec.

The model is a stock diffusers ``UNet2DModel`` with a joint class embedding
(``num_class_embeds = n_fst * n_diagnoses + 1``): one learned vector per FST × diagnosis cell,
plus a last "null" class that stands for "no label" and is what classifier-free guidance
conditions on for its unconditional branch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import UNet2DModel

from generation.conditional.config import ConditionalDiffusionConfig
from validation.vocabulary import FST


@dataclass(frozen=True)
class LabelCodec:
    """Maps (fst, diagnosis) to a class index of the joint embedding and back.

    ``index = fst_position * n_diagnoses + diagnosis_position``, cells ``0 .. num_cells - 1``;
    ``null_index == num_cells`` is the classifier-free-guidance null label.

    Args:
        fsts (`tuple[int, ...]`): Skin types in embedding order.
        diagnoses (`tuple[str, ...]`): Diagnosis codes in embedding order.
    """

    fsts: tuple[int, ...]
    diagnoses: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.fsts or len(set(self.fsts)) != len(self.fsts):
            raise ValueError(f"fsts: {self.fsts!r} must be non-empty and unique")
        if not self.diagnoses or len(set(self.diagnoses)) != len(self.diagnoses):
            raise ValueError(f"diagnoses: {self.diagnoses!r} must be non-empty and unique")

    @classmethod
    def from_config(cls, config: ConditionalDiffusionConfig) -> LabelCodec:
        """The codec of a training config."""
        return cls(fsts=tuple(config.fsts), diagnoses=tuple(config.diagnoses))

    @property
    def num_cells(self) -> int:
        """Number of FST × diagnosis cells (labels other than null)."""
        return len(self.fsts) * len(self.diagnoses)

    @property
    def null_index(self) -> int:
        """The class index of the null label."""
        return self.num_cells

    @property
    def num_class_embeds(self) -> int:
        """Rows of the class embedding: every cell plus the null label."""
        return self.num_cells + 1

    def encode(self, fst: int, diagnosis: str) -> int:
        """Class index of one (fst, diagnosis) pair; ``ValueError`` for a label outside the codec."""
        try:
            fst_position = self.fsts.index(int(FST(fst)))
        except ValueError:
            raise ValueError(f"fst: {fst!r} is not one of {self.fsts}") from None
        try:
            diagnosis_position = self.diagnoses.index(diagnosis)
        except ValueError:
            raise ValueError(f"diagnosis: {diagnosis!r} is not one of {self.diagnoses}") from None
        return fst_position * len(self.diagnoses) + diagnosis_position

    def decode(self, index: int) -> tuple[int, str] | None:
        """The (fst, diagnosis) of a class index, or ``None`` for the null index."""
        if index == self.null_index:
            return None
        if not 0 <= index < self.num_cells:
            raise ValueError(f"index: {index} is outside 0..{self.null_index}")
        fst_position, diagnosis_position = divmod(index, len(self.diagnoses))
        return self.fsts[fst_position], self.diagnoses[diagnosis_position]

    def encode_many(self, fsts: Sequence[int], diagnoses: Sequence[str]) -> torch.Tensor:
        """A long tensor of class indices for paired sequences."""
        if len(fsts) != len(diagnoses):
            raise ValueError(f"fsts: {len(fsts)} labels for {len(diagnoses)} diagnoses")
        return torch.tensor(
            [self.encode(f, d) for f, d in zip(fsts, diagnoses, strict=True)], dtype=torch.long
        )

    def cell_fsts(self) -> list[int]:
        """The FST of every cell index (length ``num_cells``)."""
        return [self.fsts[i // len(self.diagnoses)] for i in range(self.num_cells)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"fsts": list(self.fsts), "diagnoses": list(self.diagnoses)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelCodec:
        """Inverse of ``to_dict``."""
        return cls(fsts=tuple(int(f) for f in data["fsts"]), diagnoses=tuple(data["diagnoses"]))


def build_unet(config: ConditionalDiffusionConfig) -> UNet2DModel:
    """A freshly initialised ``UNet2DModel`` for ``config``, seeded by ``config.seed``.

    Attention sits in the down/up blocks of ``config.resolved_attention_levels`` and in the
    middle block. The global torch RNG is left untouched.

    Args:
        config (`ConditionalDiffusionConfig`): The run configuration.
    """
    codec = LabelCodec.from_config(config)
    attention = set(config.resolved_attention_levels)
    levels = len(config.block_out_channels)
    down = tuple(
        "AttnDownBlock2D" if level in attention else "DownBlock2D" for level in range(levels)
    )
    up = tuple(
        "AttnUpBlock2D" if level in attention else "UpBlock2D" for level in reversed(range(levels))
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return UNet2DModel(
            sample_size=config.image_size,
            in_channels=config.in_channels,
            out_channels=config.in_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=tuple(config.block_out_channels),
            layers_per_block=config.layers_per_block,
            attention_head_dim=config.attention_head_dim,
            norm_num_groups=config.resolved_norm_num_groups,
            num_class_embeds=codec.num_class_embeds,
        )

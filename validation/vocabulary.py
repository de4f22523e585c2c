"""The shared vocabulary: Fitzpatrick skin types and diagnoses.

Every dataset importer maps its own labels onto these codes, and every metric groups by them,
so that "FST V" or "melanoma" mean the same thing in a HAM10000 import, a phantom set, a
generated set and a reader study.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class FST(IntEnum):
    """Fitzpatrick skin type I-VI."""

    I = 1  # noqa: E741 - the Roman numeral is the domain's own name
    II = 2
    III = 3
    IV = 4
    V = 5
    VI = 6

    @property
    def roman(self) -> str:
        return self.name

    @classmethod
    def parse(cls, value: object) -> FST:
        """Parse 1-6, "1"-"6", "I"-"VI" or "FST3"; raise ``ValueError`` on anything else."""
        text = str(value).strip().upper()
        if text.startswith("FST"):
            text = text[3:].strip()
        if text in cls.__members__:
            return cls[text]
        try:
            number = int(text)
        except ValueError:
            raise ValueError(
                f"value: {value!r} is not a Fitzpatrick skin type (1-6 or I-VI)"
            ) from None
        if number not in range(1, 7):
            raise ValueError(f"value: {value!r} is not a Fitzpatrick skin type (1-6 or I-VI)")
        return cls(number)


ALL_FST: tuple[FST, ...] = tuple(FST)

#: Groups used throughout the targets: FST I-III ("light"), IV, and V-VI ("dark").
FST_GROUPS: dict[str, tuple[FST, ...]] = {
    "I-III": (FST.I, FST.II, FST.III),
    "IV": (FST.IV,),
    "V-VI": (FST.V, FST.VI),
}


def fst_group(fst: FST | int) -> str:
    """The target group ("I-III", "IV" or "V-VI") of a skin type."""
    fst = FST(fst)
    for name, members in FST_GROUPS.items():
        if fst in members:
            return name
    raise ValueError(f"fst: {fst!r} belongs to no group")  # unreachable for a valid FST


@dataclass(frozen=True)
class Diagnosis:
    """One entry of the shared diagnosis vocabulary.

    ``malignant`` is ``None`` where the entry mixes benign and malignant lesions.
    """

    code: str
    label: str
    malignant: bool | None


DIAGNOSES: dict[str, Diagnosis] = {
    d.code: d
    for d in (
        Diagnosis("nevus", "Melanocytic nevus", False),
        Diagnosis("melanoma", "Melanoma", True),
        Diagnosis("bcc", "Basal cell carcinoma", True),
        Diagnosis("scc", "Squamous cell carcinoma", True),
        # HAM10000's "akiec" groups actinic keratoses with Bowen's disease (intraepithelial
        # carcinoma); binary benign/malignant benchmarks count the class as malignant.
        Diagnosis("actinic_keratosis", "Actinic keratosis / intraepithelial carcinoma", True),
        Diagnosis("seborrheic_keratosis", "Seborrheic keratosis", False),
        Diagnosis("dermatofibroma", "Dermatofibroma", False),
        Diagnosis("vascular", "Vascular lesion", False),
        Diagnosis("other", "Other or unspecified", None),
    )
}


def diagnosis(code: str) -> Diagnosis:
    """Look up a diagnosis code; raise ``ValueError`` naming the code if it is unknown."""
    try:
        return DIAGNOSES[code]
    except KeyError:
        known = ", ".join(DIAGNOSES)
        raise ValueError(f"diagnosis: unknown code {code!r} (known: {known})") from None

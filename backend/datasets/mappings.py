"""How each public dataset's diagnosis labels map onto the shared vocabulary.

One explicit table per format; the readers in ``backend.datasets.formats`` use nothing else.
Shared codes are those of ``validation.vocabulary.DIAGNOSES``. Two choices apply throughout:

* ``seborrheic_keratosis`` stands for the *benign keratosis-like* family of HAM10000 and
  ISIC ("bkl"/"BKL": seborrheic keratosis, solar lentigo, lichen-planus-like keratosis),
  because that is the class every classifier trained on those sets learns. The original
  label is always kept in ``Image.diagnosis_original``.
* ``vascular`` is the HAM10000 "vasc" class (angiomas, angiokeratomas, pyogenic granulomas):
  benign vascular *lesions*. Kaposi sarcoma (malignant) and vascular malformations spread
  over an area (port-wine stain, lymphangioma, telangiectases) map to ``other``.

Labels a table does not list become ``other`` in the open-ended sets (Fitzpatrick17k, DDI),
where their malignancy comes from the file; in the closed sets (HAM10000, ISIC 2019,
PAD-UFES-20) an unlisted code is an error.
"""

from __future__ import annotations

import re

from validation.vocabulary import DIAGNOSES

HAM10000_DX: dict[str, str] = {
    "akiec": "actinic_keratosis",
    "bcc": "bcc",
    "bkl": "seborrheic_keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "nevus",
    "vasc": "vascular",
}
"""HAM10000 ``dx`` codes (Tschandl et al., Sci. Data 2018, HAM10000_metadata.csv).

"akiec" is actinic keratoses and intraepithelial carcinoma (Bowen's disease), the meaning of
the shared ``actinic_keratosis`` code. "bkl" ("benign keratosis-like lesions": solar
lentigo, seborrheic keratosis, lichen-planus-like keratosis) maps to
``seborrheic_keratosis``; the original code stays in ``diagnosis_original``.
"""

ISIC2019_CLASSES: dict[str, str] = {
    "MEL": "melanoma",
    "NV": "nevus",
    "BCC": "bcc",
    "AK": "actinic_keratosis",
    "BKL": "seborrheic_keratosis",
    "DF": "dermatofibroma",
    "VASC": "vascular",
    "SCC": "scc",
    "UNK": "other",
}
"""The one-hot columns of ISIC_2019_Training_GroundTruth.csv (ISIC 2019 challenge, task 1).

"BKL" is the benign keratosis family (as HAM10000's "bkl"); "UNK" ("none of the others")
becomes ``other`` with unknown malignancy. In the distributed training set UNK is empty.
"""

PAD_UFES_20_DIAGNOSTIC: dict[str, str] = {
    "ACK": "actinic_keratosis",
    "BCC": "bcc",
    "MEL": "melanoma",
    "NEV": "nevus",
    "SCC": "scc",
    "SEK": "seborrheic_keratosis",
}
"""PAD-UFES-20 ``diagnostic`` codes (Pacheco et al., Data in Brief 2020, metadata.csv).

ACK is actinic keratosis alone; SCC in PAD-UFES-20 includes Bowen's disease.
"""

PAD_UFES_20_CANCERS = frozenset({"BCC", "MEL", "SCC"})
"""The PAD-UFES-20 codes its paper counts as skin cancer; the others (ACK, NEV, SEK) are its
"skin disease" group. Malignancy follows the dataset's own grouping: a PAD actinic keratosis
is benign (pre-malignant), although the shared ``actinic_keratosis`` code is malignant
because HAM10000's akiec also holds intraepithelial carcinoma (Bowen's disease).
"""

FITZPATRICK17K_LABELS: dict[str, str] = {
    # melanoma
    "melanoma": "melanoma",
    "malignant melanoma": "melanoma",
    "superficial spreading melanoma ssm": "melanoma",
    "lentigo maligna": "melanoma",
    # basal cell carcinoma
    "basal cell carcinoma": "bcc",
    "basal cell carcinoma morpheiform": "bcc",
    "solid cystic basal cell carcinoma": "bcc",
    # squamous cell carcinoma
    "squamous cell carcinoma": "scc",
    # keratoses
    "actinic keratosis": "actinic_keratosis",
    "seborrheic keratosis": "seborrheic_keratosis",
    # melanocytic nevi (Becker, epidermal and sebaceous "nevi" are hamartomas: other)
    "nevocytic nevus": "nevus",
    "congenital nevus": "nevus",
    "halo nevus": "nevus",
    "dysplastic nevus": "nevus",
    # dermatofibroma and benign vascular lesions
    "dermatofibroma": "dermatofibroma",
    "pyogenic granuloma": "vascular",
    "granuloma pyogenic": "vascular",
}
"""Fitzpatrick17k ``label`` values (Groh et al., CVPR-W 2021, fitzpatrick17k.csv).

The 114 conditions are lower-case English names; only the lesion types of the shared
vocabulary are listed here (both spellings of pyogenic granuloma occur). Every other label
(e.g. "kaposi sarcoma", "mycosis fungoides", "psoriasis", "becker nevus") becomes ``other``
with malignancy from ``three_partition_label``. "dysplastic nevus" is listed for files that
carry it; the published label list has no such label.
"""

DDI_DISEASES: dict[str, str] = {
    "melanoma": "melanoma",
    "melanoma-in-situ": "melanoma",
    "melanoma-acral-lentiginous": "melanoma",
    "nodular-melanoma-(nm)": "melanoma",
    "lentigo-maligna": "melanoma",
    "basal-cell-carcinoma": "bcc",
    "squamous-cell-carcinoma": "scc",
    "squamous-cell-carcinoma-in-situ": "scc",
    "squamous-cell-carcinoma-keratoacanthoma": "scc",
    "actinic-keratosis": "actinic_keratosis",
    "seborrheic-keratosis": "seborrheic_keratosis",
    "seborrheic-keratosis-irritated": "seborrheic_keratosis",
    "solar-lentigo": "seborrheic_keratosis",
    "lichenoid-keratosis": "seborrheic_keratosis",
    "benign-keratosis": "seborrheic_keratosis",
    "melanocytic-nevi": "nevus",
    "dysplastic-nevus": "nevus",
    "blue-nevus": "nevus",
    "congenital-nevus": "nevus",
    "pigmented-spindle-cell-nevus-of-reed": "nevus",
    "atypical-spindle-cell-nevus-of-reed": "nevus",
    "dermatofibroma": "dermatofibroma",
    "pyogenic-granuloma": "vascular",
    "arteriovenous-hemangioma": "vascular",
    "hemangioma": "vascular",
    "angioma": "vascular",
    "angiokeratoma": "vascular",
}
"""DDI ``disease`` values (Daneshjou et al., Sci. Adv. 2022, ddi_metadata.csv).

Lower-case, hyphenated histopathology names. Besides this table, the documented prefix rules
in ``DDI_DISEASE_PREFIXES`` catch the subtypes (e.g. "basal-cell-carcinoma-nodular"). Anything
else (e.g. "verruca-vulgaris", "kaposi-sarcoma", "epidermal-nevus") becomes ``other``.
Malignancy always comes from DDI's own ``malignant`` column.
"""

DDI_DISEASE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("melanoma-", "melanoma"),
    ("basal-cell-carcinoma-", "bcc"),
    ("squamous-cell-carcinoma-", "scc"),
    ("seborrheic-keratosis-", "seborrheic_keratosis"),
)
"""A DDI disease not in ``DDI_DISEASES`` that starts with one of these maps to its code."""


def normalise_label(text: str) -> str:
    """Lower case, with "-", "_" and runs of white space read as one space."""
    return re.sub(r"[\s_\-]+", " ", text.strip().lower()).strip()


def _generic_synonyms() -> dict[str, str]:
    """Every label of the tables above, plus the shared codes, keyed by ``normalise_label``."""
    table: dict[str, str] = {}
    sources: list[dict[str, str]] = [
        {code: code for code in DIAGNOSES},
        HAM10000_DX,
        ISIC2019_CLASSES,
        PAD_UFES_20_DIAGNOSTIC,
        FITZPATRICK17K_LABELS,
        DDI_DISEASES,
        {
            "nevi": "nevus",
            "naevus": "nevus",
            "melanocytic nevus": "nevus",
            "basal cell carcinoma": "bcc",
            "squamous cell carcinoma": "scc",
            "vascular lesion": "vascular",
            "benign keratosis": "seborrheic_keratosis",
            "unknown": "other",
        },
    ]
    for source in sources:
        for label, code in source.items():
            key = normalise_label(label)
            if table.setdefault(key, code) != code:  # pragma: no cover - guarded by a test
                raise ValueError(f"synonym {label!r} maps to both {table[key]!r} and {code!r}")
    return table


GENERIC_DIAGNOSES: dict[str, str] = _generic_synonyms()
"""The ``diagnosis`` values a generic CSV may use, keyed by ``normalise_label``.

The shared codes themselves, the codes and labels of the five public formats above (HAM10000
"mel", ISIC "BKL", PAD "SEK", Fitzpatrick17k "nevocytic nevus", DDI "melanoma-in-situ", ...)
and a few common names ("melanocytic nevus", "vascular lesion", "unknown" -> ``other``).
Matching ignores case and treats "-", "_" and spaces alike.
"""

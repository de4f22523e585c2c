"""Format readers: each turns a dataset's files, as distributed, into ``ImportRow``s.

A reader takes the metadata CSV and the images folder and returns the rows it understood and
the ``RowError``s (file, 1-based row, field, reason) of those it did not. ``READERS`` maps
each ``Dataset.Format`` value to its reader. Diagnosis tables live in
``backend.datasets.mappings``.

What each format reads (``--metadata`` is the file named first):

* **HAM10000** (``ham10000``): ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type,
  age, sex, localization[, dataset]). Image ``<image_id>.jpg`` in the images folder or one
  level of subfolders (the distribution's HAM10000_images_part_1/part_2). No FST label: it
  is estimated from the skin's ITA on import. No patient id.
* **ISIC 2019** (``isic2019``): ``ISIC_2019_Training_GroundTruth.csv`` (image + one-hot
  MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK; exactly one 1.0 per row). The metadata CSV
  (image, age_approx, anatom_site_general, lesion_id, sex) is read from beside it, named as
  the ground truth with "GroundTruth" replaced by "Metadata"; when it is missing the rows
  still import without lesion id, age, sex and site, and a file-level note (row None) is
  listed with the import's errors. Image ``<image>.jpg``, found as for HAM10000. No FST.
* **Fitzpatrick17k** (``fitzpatrick17k``): ``fitzpatrick17k.csv`` (md5hash,
  fitzpatrick_scale, fitzpatrick_centaur, label, nine_partition_label,
  three_partition_label, qc, url, url_alphanum). Image ``<md5hash>.jpg``. fitzpatrick_scale
  1-6 is the FST label; -1 (or 0, blank) is unlabelled: the FST is left to the ITA estimate
  and ``ground_truth["fst_note"]`` says so (fitzpatrick_centaur is kept in ground_truth, not
  used as a fallback). No lesion or patient ids (the md5hash is the image id; an image
  without a lesion id is its own group when splitting).
* **DDI** (``ddi``): ``ddi_metadata.csv`` (unnamed index column, DDI_ID, DDI_file,
  skin_tone, malignant, disease). Image named by DDI_file; image id DDI_ID. skin_tone 12,
  34, 56 is the FST range I-II, III-IV, V-VI (``fst`` stays empty, source "label").
  Malignancy is DDI's own per-image ``malignant`` column.
* **PAD-UFES-20** (``pad-ufes-20``): ``metadata.csv`` (patient_id, lesion_id, ...,
  fitspatrick, region, diameter_1, diameter_2, diagnostic, ..., img_id, biopsed). Image and
  image id ``img_id`` (e.g. PAT_1516_1765_530.png), found as for HAM10000 (the distribution
  splits them over imgs_part_1..3). fitspatrick 1-6 is the label, blank or "nan" unknown.
* **Generic CSV** (``generic``), for a user's own data, one row per image:

  ========== ========= ==================================================================
  column     required  meaning
  ========== ========= ==================================================================
  image_id   yes       unique id of the image in this dataset
  file       yes       image path relative to the images folder (no "..", no links)
  diagnosis  yes       a shared code (nevus, melanoma, bcc, scc, actinic_keratosis,
                       seborrheic_keratosis, dermatofibroma, vascular, other) or a
                       synonym: any code/label of the public formats (mel, NV, SEK,
                       "basal cell carcinoma", ...); case, "-", "_" and spaces ignored
  fst        no        1-6, I-VI or FST3 (exact), or a range 5-6, 56, V-VI; blank =
                       unknown (then estimated from the skin's ITA)
  malignant  no        true/false, 1/0, yes/no; blank = from the diagnosis code
  lesion_id  no        groups images of one lesion (kept together when splitting)
  patient_id no        groups lesions of one patient
  ita        no        a measured ITA in degrees (else the estimate is stored)
  ========== ========= ==================================================================

  Any other column is kept per image in ``ground_truth``.

Rules shared by all readers: an exact FST may be written "3" or "3.0" (pandas writes integer
columns with blanks as floats, as in PAD-UFES-20's metadata.csv); "3.5", "7" or "0" are
errors. A per-image malignancy in the file (DDI ``malignant``, generic ``malignant``) wins
over the diagnosis code's (blank: the code's is used); a class-level one (Fitzpatrick17k ``three_partition_label``) is
used only for labels mapped to ``other``. Image files are found without following symbolic
links. Extra columns go to ``ground_truth`` with their text as written.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from backend.datasets import mappings
from backend.datasets.models import Dataset, Image
from backend.datasets.rows import ImportRow, Reader, RowError, read_csv_rows, resolve_inside
from validation.vocabulary import DIAGNOSES, FST


def read_phantom(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read the phantom generator's metadata.csv (see generation.phantom)."""
    rows, errors = read_csv_rows(metadata, ["image_id", "file", "fst", "diagnosis"])
    known = {"image_id", "file", "fst", "diagnosis", "malignant", "ita", "lesion_id", "patient_id"}
    result: list[ImportRow] = []
    for number, raw in enumerate(rows, start=1):
        try:
            fst = int(FST.parse(raw["fst"]))
        except ValueError as exc:
            errors.append(RowError(metadata.name, number, "fst", str(exc)))
            continue
        code = (raw.get("diagnosis") or "").strip()
        if code not in DIAGNOSES:
            errors.append(
                RowError(metadata.name, number, "diagnosis", f"unknown diagnosis {code!r}")
            )
            continue
        try:
            source = resolve_inside(images_dir, (raw.get("file") or "").strip())
        except ValueError as exc:
            errors.append(RowError(metadata.name, number, "file", str(exc)))
            continue
        try:
            ita = float(raw["ita"]) if raw.get("ita") else None
        except ValueError:
            errors.append(RowError(metadata.name, number, "ita", f"not a number: {raw['ita']!r}"))
            continue
        result.append(
            ImportRow(
                row=number,
                image_id=raw["image_id"].strip(),
                source=source,
                diagnosis=code,
                diagnosis_original=code,
                malignant=DIAGNOSES[code].malignant,
                fst=fst,
                fst_source=Image.FstSource.LABEL,
                ita=ita,
                lesion_id=(raw.get("lesion_id") or "").strip(),
                patient_id=(raw.get("patient_id") or "").strip(),
                ground_truth={k: v for k, v in raw.items() if k not in known and k is not None},
            )
        )
    return result, errors


# --- Shared helpers --------------------------------------------------------------------------


#: A CSV data row as ``read_csv_rows`` gives it: column name -> text. Readers tolerate absent
#: optional columns and ``None`` keys or values.
Row = dict[str, Any]


class BadValue(Exception):
    """A problem with one field of one row; the reader turns it into a ``RowError``."""

    def __init__(self, field: str | None, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def _cell(raw: Row, column: str) -> str:
    """The stripped text of ``column`` ("" when the row is short or the column absent)."""
    value = raw.get(column)
    return value.strip() if isinstance(value, str) else ""


def _extras(raw: Row, used: Iterable[str]) -> dict[str, Any]:
    """The row's other named columns, as written (the unnamed index column is dropped)."""
    skip = set(used)
    return {
        key: value
        for key, value in raw.items()
        if key is not None and key.strip() and key not in skip
    }


HAM10000_COLUMNS = frozenset(
    {"lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "dataset"}
)
ISIC2019_COLUMNS = frozenset({"image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"})
FITZPATRICK17K_COLUMNS = frozenset(
    {
        "md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label", "nine_partition_label",
        "three_partition_label", "qc", "url", "url_alphanum",
    }
)  # fmt: skip
DDI_COLUMNS = frozenset({"DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"})
PAD_UFES_20_COLUMNS = frozenset(
    {
        "patient_id", "lesion_id", "smoke", "drink", "background_father", "background_mother", "age",
        "pesticide", "gender", "skin_cancer_history", "cancer_history", "has_piped_water",
        "has_sewage_system", "fitspatrick", "region", "diameter_1", "diameter_2", "diagnostic", "itch",
        "grew", "hurt", "changed", "bleed", "elevation", "img_id", "biopsed",
    }
)  # fmt: skip
"""The published metadata columns of each public dataset (other columns earn a warning)."""


def _collect(
    metadata: Path,
    rows: list[dict[str, str]],
    parse: Callable[[int, Row], ImportRow],
    errors: list[RowError],
    published: Collection[str] | None = None,
) -> tuple[list[ImportRow], list[RowError]]:
    """Run ``parse`` on every data row (numbered from 1), turning ``BadValue`` into errors.

    With ``published`` (the format's published columns), columns the format does not have
    are reported as a warning: they are kept as ground truth, but they often mean the wrong
    ``--format`` was chosen.
    """
    extra = (
        [name for name in (rows[0] if rows else {}) if name and name not in published]
        if published
        else []
    )
    if extra:
        errors.append(
            RowError(
                metadata.name,
                0,
                ", ".join(extra),
                "column(s) not in this format's published layout; kept as ground truth (check --format)",
                level="warning",
            )
        )
    result: list[ImportRow] = []
    for number, raw in enumerate(rows, start=1):
        try:
            result.append(parse(number, raw))
        except BadValue as exc:
            errors.append(RowError(metadata.name, number, exc.field, exc.reason))
    return result, errors


_INTEGRAL = re.compile(r"^[+-]?\d+(\.0*)?$")


def parse_exact_fst(text: str, field: str, unknown: Iterable[str] = ("", "nan")) -> int | None:
    """An exact Fitzpatrick type from "1"-"6" or "1.0"-"6.0"; ``None`` for an ``unknown`` marker.

    Raises ``BadValue`` for anything else ("7", "3.5", "III" in a numeric column).
    """
    value = text.strip()
    if value.lower() in unknown:
        return None
    if not _INTEGRAL.match(value):
        raise BadValue(field, f"{value!r} is not a Fitzpatrick skin type (a whole number 1-6)")
    number = int(float(value))
    if number < 1 or number > 6:
        raise BadValue(field, f"{value!r} is not a Fitzpatrick skin type (1-6)")
    return number


def _fst_part(part: str) -> int:
    """One Fitzpatrick type from "3", "3.0" or "III"; ``ValueError`` otherwise."""
    if _INTEGRAL.match(part):
        number = int(float(part))
        if 1 <= number <= 6:
            return number
        raise ValueError(part)
    return int(FST.parse(part))


def parse_fst_or_range(text: str, field: str) -> tuple[int, int] | None:
    """An FST or a range: "3", "3.0", "III", "FST3" -> (3, 3); "5-6", "56", "V-VI" -> (5, 6).

    Blank (or "nan") is ``None``. A range must rise (low < high); two digits ("56", "12")
    are read as a range, as DDI writes its groups. Raises ``BadValue`` otherwise.
    """
    value = text.strip()
    if not value or value.lower() == "nan":
        return None
    compact = re.sub(r"\s+", "", value).upper()
    if compact.startswith("FST"):
        compact = compact[3:]
    if re.fullmatch(r"[1-6]{2}", compact):
        parts = [compact[0], compact[1]]
    else:
        parts = re.split(r"[-\u2013/]", compact)
    try:
        if len(parts) == 1:
            exact = _fst_part(parts[0])
            return exact, exact
        if len(parts) == 2:
            low = _fst_part(parts[0])
            high = _fst_part(parts[1].removeprefix("FST"))
            if low < high:
                return low, high
            raise BadValue(field, f"{value!r} is not a rising range (low-high, e.g. 5-6)")
    except ValueError:
        pass
    raise BadValue(
        field,
        f"{value!r} is not a Fitzpatrick skin type (1-6, I-VI, FST3) or range (5-6, 56, V-VI)",
    )


_TRUE = {"true", "1", "1.0", "yes", "y", "t"}
_FALSE = {"false", "0", "0.0", "no", "n", "f"}


def parse_bool(text: str, field: str) -> bool | None:
    """true/false, 1/0, yes/no (any case); blank is ``None``; else ``BadValue``."""
    value = text.strip().lower()
    if not value:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadValue(field, f"{text.strip()!r} is not true/false, 1/0 or yes/no")


class ImageFinder:
    """Find image files by name in the images folder or one level of its subfolders.

    The distributions split their images over folders (HAM10000_images_part_1/part_2,
    PAD-UFES-20 imgs_part_1..3), so the folder is indexed once. Symbolic links (files or
    folders) are not followed, hidden folders and ``__MACOSX`` are skipped, and a name found
    in more than one place is refused rather than guessed.
    """

    def __init__(self, root: Path):
        self.root = root
        self._index: dict[str, list[str]] | None = None

    def _build(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        with os.scandir(self.root) as top:
            for entry in top:
                if entry.is_file(follow_symlinks=False):
                    index.setdefault(entry.name, []).append(entry.name)
                elif (
                    entry.is_dir(follow_symlinks=False)
                    and not entry.name.startswith(".")
                    and entry.name != "__MACOSX"
                ):
                    with os.scandir(entry.path) as inner:
                        for child in inner:
                            if child.is_file(follow_symlinks=False):
                                index.setdefault(child.name, []).append(
                                    f"{entry.name}/{child.name}"
                                )
        return index

    def find(self, name: str, field: str) -> Path:
        """The path of the image ``name``; ``BadValue`` naming ``field`` if it is not there."""
        if not name:
            raise BadValue(field, "missing image file name")
        if "/" in name or "\\" in name or name in {".", ".."} or "\x00" in name:
            raise BadValue(field, f"{name!r} must be a file name, without folders")
        if self._index is None:
            self._index = self._build()
        places = self._index.get(name, [])
        if not places:
            raise BadValue(
                field,
                f"image file not found: {name} (looked in the images folder and its subfolders)",
            )
        if len(places) > 1:
            raise BadValue(field, f"image file {name} is in several folders: {', '.join(places)}")
        try:
            return resolve_inside(self.root, places[0])
        except ValueError as exc:
            raise BadValue(field, str(exc)) from None


def _provenance(fmt: str, metadata: Path, source: Path, images_dir: Path) -> dict[str, Any]:
    try:
        relative = source.relative_to(images_dir.resolve()).as_posix()
    except ValueError:
        relative = source.name
    return {"format": fmt, "metadata": metadata.name, "file": relative}


# --- HAM10000 --------------------------------------------------------------------------------


def read_ham10000(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read HAM10000_metadata.csv; images ``<image_id>.jpg`` (see the module docstring)."""
    rows, errors = read_csv_rows(metadata, ["lesion_id", "image_id", "dx"])
    finder = ImageFinder(images_dir)
    known = ", ".join(mappings.HAM10000_DX)

    def parse(number: int, raw: Row) -> ImportRow:
        image_id = _cell(raw, "image_id")
        if not image_id:
            raise BadValue("image_id", "missing image id (the image file is <image_id>.jpg)")
        dx = _cell(raw, "dx")
        code = mappings.HAM10000_DX.get(dx.lower())
        if code is None:
            raise BadValue("dx", f"unknown diagnosis code {dx!r} (expected one of {known})")
        source = finder.find(f"{image_id}.jpg", "image_id")
        return ImportRow(
            row=number,
            image_id=image_id,
            source=source,
            diagnosis=code,
            diagnosis_original=dx,
            malignant=DIAGNOSES[code].malignant,
            lesion_id=_cell(raw, "lesion_id"),
            ground_truth=_extras(raw, ["lesion_id", "image_id", "dx"]),
            provenance=_provenance(Dataset.Format.HAM10000, metadata, source, images_dir),
        )

    return _collect(metadata, rows, parse, errors, published=HAM10000_COLUMNS)


# --- ISIC 2019 -------------------------------------------------------------------------------


def isic_metadata_path(ground_truth: Path) -> Path | None:
    """The metadata CSV beside an ISIC ground-truth CSV ("GroundTruth" -> "Metadata")."""
    if "GroundTruth" not in ground_truth.name:
        return None
    return ground_truth.with_name(ground_truth.name.replace("GroundTruth", "Metadata"))


def read_isic2019(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read ISIC_2019_Training_GroundTruth.csv and the metadata CSV beside it."""
    classes = list(mappings.ISIC2019_CLASSES)
    rows, errors = read_csv_rows(metadata, ["image", *classes])
    extra_path = isic_metadata_path(metadata)
    extra: dict[str, Row] = {}
    if extra_path is not None and extra_path.is_file():
        extra_rows, extra_errors = read_csv_rows(extra_path, ["image"])
        errors.extend(extra_errors)
        for raw in extra_rows:
            extra.setdefault(_cell(raw, "image"), raw)
    else:
        expected = extra_path.name if extra_path else "the *_Metadata.csv"
        errors.append(
            RowError(
                expected,
                None,
                None,
                "metadata CSV not found beside the ground truth: lesion ids, age, sex and "
                "site are left empty",
            )
        )
    finder = ImageFinder(images_dir)

    def parse(number: int, raw: Row) -> ImportRow:
        image = _cell(raw, "image")
        if not image:
            raise BadValue("image", "missing image id (the image file is <image>.jpg)")
        ones: list[str] = []
        for column in classes:
            text = _cell(raw, column)
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if value not in (0.0, 1.0):
                raise BadValue(column, f"one-hot value must be 1.0 or 0.0, got {text!r}")
            if value == 1.0:
                ones.append(column)
        if len(ones) != 1:
            field = "/".join(ones) if ones else "/".join(classes)
            found = (
                f"{len(ones)} classes are 1.0 ({', '.join(ones)})" if ones else "no class is 1.0"
            )
            raise BadValue(field, f"malformed one-hot row: {found}; exactly one must be")
        code = mappings.ISIC2019_CLASSES[ones[0]]
        source = finder.find(f"{image}.jpg", "image")
        info = extra.get(image, {})
        return ImportRow(
            row=number,
            image_id=image,
            source=source,
            diagnosis=code,
            diagnosis_original=ones[0],
            malignant=DIAGNOSES[code].malignant,
            lesion_id=_cell(info, "lesion_id"),
            ground_truth={
                **_extras(raw, ["image", *classes]),
                **_extras(info, ["image", "lesion_id"]),
            },
            provenance=_provenance(Dataset.Format.ISIC2019, metadata, source, images_dir),
        )

    return _collect(metadata, rows, parse, errors, published=ISIC2019_COLUMNS)


# --- Fitzpatrick17k --------------------------------------------------------------------------

_F17K_LABELS = {
    mappings.normalise_label(label): code for label, code in mappings.FITZPATRICK17K_LABELS.items()
}
_THREE_PARTITION = {"malignant": True, "benign": False, "non-neoplastic": False}


def read_fitzpatrick17k(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read fitzpatrick17k.csv; images ``<md5hash>.jpg`` (see the module docstring)."""
    rows, errors = read_csv_rows(
        metadata, ["md5hash", "fitzpatrick_scale", "label", "three_partition_label"]
    )
    finder = ImageFinder(images_dir)

    def parse(number: int, raw: Row) -> ImportRow:
        md5 = _cell(raw, "md5hash")
        if not md5:
            raise BadValue("md5hash", "missing image id (the image file is <md5hash>.jpg)")
        scale = _cell(raw, "fitzpatrick_scale")
        fst = parse_exact_fst(scale, "fitzpatrick_scale", unknown=("", "nan", "-1", "0"))
        label = _cell(raw, "label")
        if not label:
            raise BadValue("label", "missing label")
        three = _cell(raw, "three_partition_label").lower()
        if three and three not in _THREE_PARTITION:
            raise BadValue(
                "three_partition_label",
                f"{three!r} is not one of {', '.join(_THREE_PARTITION)}",
            )
        code = _F17K_LABELS.get(mappings.normalise_label(label))
        if code is not None:
            malignant = DIAGNOSES[code].malignant
        elif three:
            code, malignant = "other", _THREE_PARTITION[three]
        else:
            raise BadValue(
                "three_partition_label",
                f"missing; it gives the malignancy of the unmapped label {label!r}",
            )
        source = finder.find(f"{md5}.jpg", "md5hash")
        ground_truth = _extras(raw, ["md5hash", "label", "url", "url_alphanum"])
        if fst is None:
            ground_truth["fst_note"] = (
                f"fitzpatrick_scale {scale or 'blank'} (unlabelled): FST left to the ITA estimate"
            )
        provenance = _provenance(Dataset.Format.FITZPATRICK17K, metadata, source, images_dir)
        if _cell(raw, "url"):
            provenance["url"] = _cell(raw, "url")
        return ImportRow(
            row=number,
            image_id=md5,
            source=source,
            diagnosis=code,
            diagnosis_original=label,
            malignant=malignant,
            fst=fst,
            fst_source=Image.FstSource.LABEL if fst is not None else Image.FstSource.UNKNOWN,
            ground_truth=ground_truth,
            provenance=provenance,
        )

    return _collect(metadata, rows, parse, errors, published=FITZPATRICK17K_COLUMNS)


# --- DDI -------------------------------------------------------------------------------------

_DDI_SKIN_TONES = {"12": (1, 2), "34": (3, 4), "56": (5, 6)}


def ddi_code(disease: str) -> str:
    """The shared code of a DDI disease: the table, then the prefix rules, else ``other``."""
    name = disease.strip().lower()
    code = mappings.DDI_DISEASES.get(name)
    if code is not None:
        return code
    for prefix, prefixed in mappings.DDI_DISEASE_PREFIXES:
        if name.startswith(prefix):
            return prefixed
    return "other"


def read_ddi(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read ddi_metadata.csv; images named by DDI_file (see the module docstring)."""
    rows, errors = read_csv_rows(
        metadata, ["DDI_ID", "DDI_file", "skin_tone", "malignant", "disease"]
    )
    finder = ImageFinder(images_dir)

    def parse(number: int, raw: Row) -> ImportRow:
        ddi_id = _cell(raw, "DDI_ID")
        if not ddi_id:
            raise BadValue("DDI_ID", "missing image id")
        tone = _cell(raw, "skin_tone")
        if tone not in _DDI_SKIN_TONES:
            raise BadValue("skin_tone", f"{tone!r} is not 12, 34 or 56 (FST I-II, III-IV or V-VI)")
        low, high = _DDI_SKIN_TONES[tone]
        flag = parse_bool(_cell(raw, "malignant"), "malignant")
        disease = _cell(raw, "disease")
        if not disease:
            raise BadValue("disease", "missing disease")
        code = ddi_code(disease)
        source = finder.find(_cell(raw, "DDI_file"), "DDI_file")
        return ImportRow(
            row=number,
            image_id=ddi_id,
            source=source,
            diagnosis=code,
            diagnosis_original=disease,
            malignant=flag if flag is not None else DIAGNOSES[code].malignant,
            fst_min=low,
            fst_max=high,
            fst_source=Image.FstSource.LABEL,
            ground_truth=_extras(raw, ["DDI_ID", "DDI_file", "malignant", "disease"]),
            provenance=_provenance(Dataset.Format.DDI, metadata, source, images_dir),
        )

    return _collect(metadata, rows, parse, errors, published=DDI_COLUMNS)


# --- PAD-UFES-20 -----------------------------------------------------------------------------


def read_pad_ufes_20(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read PAD-UFES-20's metadata.csv; images named by img_id (see the module docstring)."""
    rows, errors = read_csv_rows(
        metadata, ["patient_id", "lesion_id", "fitspatrick", "diagnostic", "img_id"]
    )
    finder = ImageFinder(images_dir)
    known = ", ".join(mappings.PAD_UFES_20_DIAGNOSTIC)

    def parse(number: int, raw: Row) -> ImportRow:
        img_id = _cell(raw, "img_id")
        if not img_id:
            raise BadValue("img_id", "missing image file name")
        diagnostic = _cell(raw, "diagnostic")
        code = mappings.PAD_UFES_20_DIAGNOSTIC.get(diagnostic.upper())
        if code is None:
            raise BadValue(
                "diagnostic", f"unknown diagnosis code {diagnostic!r} (expected one of {known})"
            )
        fst = parse_exact_fst(_cell(raw, "fitspatrick"), "fitspatrick")
        source = finder.find(img_id, "img_id")
        return ImportRow(
            row=number,
            image_id=img_id,
            source=source,
            diagnosis=code,
            diagnosis_original=diagnostic,
            malignant=diagnostic.upper() in mappings.PAD_UFES_20_CANCERS,
            fst=fst,
            fst_source=Image.FstSource.LABEL if fst is not None else Image.FstSource.UNKNOWN,
            lesion_id=_cell(raw, "lesion_id"),
            patient_id=_cell(raw, "patient_id"),
            ground_truth=_extras(
                raw, ["patient_id", "lesion_id", "fitspatrick", "diagnostic", "img_id"]
            ),
            provenance=_provenance(Dataset.Format.PAD_UFES_20, metadata, source, images_dir),
        )

    return _collect(metadata, rows, parse, errors, published=PAD_UFES_20_COLUMNS)


# --- Generic CSV -----------------------------------------------------------------------------

GENERIC_COLUMNS = (
    "image_id",
    "file",
    "diagnosis",
    "fst",
    "malignant",
    "lesion_id",
    "patient_id",
    "ita",
)


def read_generic(metadata: Path, images_dir: Path) -> tuple[list[ImportRow], list[RowError]]:
    """Read a user's CSV with the columns of the module docstring's table."""
    rows, errors = read_csv_rows(metadata, ["image_id", "file", "diagnosis"])

    def parse(number: int, raw: Row) -> ImportRow:
        image_id = _cell(raw, "image_id")
        if not image_id:
            raise BadValue("image_id", "missing image id")
        label = _cell(raw, "diagnosis")
        if not label:
            raise BadValue("diagnosis", "missing diagnosis")
        code = mappings.GENERIC_DIAGNOSES.get(mappings.normalise_label(label))
        if code is None:
            raise BadValue(
                "diagnosis",
                f"unknown diagnosis {label!r} (use a shared code: {', '.join(DIAGNOSES)})",
            )
        fst_range = parse_fst_or_range(_cell(raw, "fst"), "fst")
        flag = parse_bool(_cell(raw, "malignant"), "malignant")
        ita_text = _cell(raw, "ita")
        ita: float | None = None
        if ita_text:
            try:
                ita = float(ita_text)
            except ValueError:
                ita = math.nan
            if not math.isfinite(ita):
                raise BadValue("ita", f"not a finite number: {ita_text!r}")
        file = _cell(raw, "file")
        if not file:
            raise BadValue("file", "missing image file name")
        try:
            source = resolve_inside(images_dir, file)
        except ValueError as exc:
            raise BadValue("file", str(exc)) from None
        fst = low = high = None
        if fst_range is not None:
            low, high = fst_range
            fst = low if low == high else None
        return ImportRow(
            row=number,
            image_id=image_id,
            source=source,
            diagnosis=code,
            diagnosis_original=label,
            malignant=flag if flag is not None else DIAGNOSES[code].malignant,
            fst=fst,
            fst_min=low,
            fst_max=high,
            fst_source=Image.FstSource.LABEL if low is not None else Image.FstSource.UNKNOWN,
            ita=ita,
            lesion_id=_cell(raw, "lesion_id"),
            patient_id=_cell(raw, "patient_id"),
            ground_truth=_extras(raw, GENERIC_COLUMNS),
            provenance={"format": Dataset.Format.GENERIC, "metadata": metadata.name, "file": file},
        )

    return _collect(metadata, rows, parse, errors)


READERS: dict[str, Reader] = {
    Dataset.Format.PHANTOM: read_phantom,
    Dataset.Format.HAM10000: read_ham10000,
    Dataset.Format.ISIC2019: read_isic2019,
    Dataset.Format.FITZPATRICK17K: read_fitzpatrick17k,
    Dataset.Format.DDI: read_ddi,
    Dataset.Format.PAD_UFES_20: read_pad_ufes_20,
    Dataset.Format.GENERIC: read_generic,
}

"""Dataset adapters: the folder layout of a public MRI distribution -> manifest rows + exclusions.

Every adapter is a function ``scan_<kind>(root, **options) -> (rows, exclusions)`` and is also
reached through the registry :func:`scan` (``scan(kind, root, **options)``; :data:`KINDS` lists
the kinds). Adapters only read: every file is opened read-only (checksums, NIfTI headers and
voxels), nothing is written, moved or touched next to the raw data.

Rows
----
``rows`` is a list of dicts with the columns :data:`ADAPTER_COLUMNS` (the manifest columns of
:mod:`brainuad.data.manifest` first, then the adapter columns), one per usable subject, in
subject order; :func:`manifest_frame` turns them into a DataFrame for
:func:`brainuad.data.manifest.write_manifest`.

==================== ==========================================================================
column               meaning
==================== ==========================================================================
subject              subject id (characters outside ``[A-Za-z0-9_.+-]`` become ``_``)
image                absolute path of the raw image of the requested ``sequence``
seg                  absolute path of the raw lesion label, ``""`` for none (healthy)
age                  years (float) or ``""`` when unknown
sex                  ``"M"``, ``"F"`` or ``""``
sequence             the requested sequence (``t1``, ``t2``, ``flair``, ``t1ce``, ...)
sha256               SHA-256 of the raw image file
seg_sha256           SHA-256 of the raw label file, ``""`` without a label            (new)
brain_mask           absolute path of a brain mask shipped with the data, else ``""``  (new)
registered           True: already in template space, skip registration              (new)
skull_stripped       True: already skull-stripped, skip skull stripping              (new)
seg_lesion_values    label values that are lesion, e.g. ``"1"``; ``""`` = every value > 0 (new)
seg_ignore_values    label values to drop from evaluation, e.g. ``"2"``; ``""`` = none  (new)
split                author split membership (``author_split`` only, else ``""``)    (new)
==================== ==========================================================================

Label semantics: the raw label keeps its values; ``seg_lesion_values`` / ``seg_ignore_values``
say how to read it (:func:`label_arrays` does it). Lesion = voxels whose value is in
``seg_lesion_values`` (every value > 0 when empty: BraTS 1/2/4 are fused into one tumour mask,
which is also what :func:`brainuad.data.nifti.load_label` does). Ignore = voxels whose value is in
``seg_ignore_values``: they are neither lesion nor healthy and must be removed from every
voxel-wise metric (WMH ``other_pathology: exclude``). ``split`` holds comma-separated tags:
``test``, ``val`` (pathology sets), ``train/<k>`` and ``val/<k>`` (healthy cross-validation fold
k); :func:`splits_from_manifest` turns them into the splits JSON of :mod:`brainuad.data.splits`.

Exclusions
----------
``exclusions`` is a list of ``{"source", "subject", "file", "reason"}``: one per subject that was
found in the layout but cannot be used (``reason`` is the full message, naming the file first).
Checks, in order, per subject: the image of ``sequence`` exists (missing sequence), every
sequence of ``require_sequences`` exists, every image is a readable 3D NIfTI (not truncated or
corrupt, not 4D, finite affine, voxel size in (0, 20] mm, no NaN/Inf voxel, not all zero), the
label exists where one is required, the label is on the image's voxel grid (shape and affine), its
values are non-negative integers within the allowed values (``label_values``; {0, 1} unless a
layout says otherwise: non-binary labels are excluded), it has at least one lesion voxel
(``allow_empty_label=False``), and a shipped brain mask is on the image's grid, binary and not
empty. ``check="header"`` reads only the headers (existence, 4D, voxel size, grid match; no
truncation / NaN / label value checks) for a fast scan of a large distribution. ``strict=True``
raises :class:`brainuad.errors.InputDataError` at the first bad subject instead. A missing or
empty ``root`` always raises.

Common options (every adapter)
------------------------------
``sequence`` (which image goes into the rows), ``require_sequences`` (other sequences a subject
must have), ``check`` (``"full"`` | ``"header"``), ``strict`` (bool), ``source`` (name written
in the exclusions, default the kind), ``workers`` (threads for checksums and checks, default 1),
``label_values`` (allowed label values; ``None`` = any non-negative integer), ``allow_empty_label``,
``participants`` (age/sex table, see each layout), ``registered`` / ``skull_stripped`` (override
the layout's default flags).

Layouts
-------
``ixi`` - IXI (https://brain-development.org/ixi-dataset/): NIfTI files named
``IXI<nnn>-<Site>-<nnnn>-<T1|T2|PD|MRA>.nii.gz`` anywhere below ``root`` (the unpacked
``IXI-T1.tar`` / ``IXI-T2.tar`` folders, flat or in sub-folders). Subject id ``IXI002-Guys-0828``.
Demographics: ``demographics`` = the ``IXI.xls`` spreadsheet (needs the ``xlrd`` package) or a
CSV/TSV export of it, absolute or relative to ``root``; by default ``IXI.xls`` / ``IXI.csv`` /
``IXI.tsv`` in ``root`` if present. Columns ``IXI_ID`` (the number in ``IXI002``), ``SEX_ID``
(1 = male, 2 = female) and ``AGE`` (years; empty = unknown). ``require_all_sequences=True``:
only subjects with both T1 and T2 (others are excluded with the missing file named). No labels.

``brats`` - BraTS (already co-registered to SRI24 and skull-stripped: rows get
``registered=True, skull_stripped=True``): one folder per subject, anywhere below ``root``, with
``<id>_{t1,t1ce,t2,flair,seg}.nii.gz``: 2021 ``BraTS2021_00000/BraTS2021_00000_t2.nii.gz``;
2019/2020 ``{HGG,LGG}/BraTS19_2013_10_1/BraTS19_2013_10_1_t2.nii.gz`` (``grades=["HGG"]`` keeps
one grade); 2023 names ``-t1n, -t1c, -t2w, -t2f`` are read as t1, t1ce, t2, flair. The label
(values 0, 1, 2, 3, 4) is required and fused: every value > 0 is tumour (``seg_lesion_values``
``""``). ``participants``: optional table with an id column (``BraTS19_ID``, ``BraTS21ID``,
``subject``, ...) and ``Age``.

``mslub`` - MSLUB (Lesjak et al. 2018, http://lit.fe.uni-lj.si/tools): one folder per patient
(``subject_glob``, default ``patient*``) anywhere below ``root``; files matched per sequence with
``globs`` (defaults ``t1: *T1W.nii.gz``, ``t1ce: *T1WKS.nii.gz``, ``t2: *T2W.nii.gz``,
``flair: *FLAIR.nii.gz``), the consensus label with ``seg_glob`` (``*consensus_gt.nii.gz``) and an
optional brain mask with ``brain_mask_glob`` (e.g. ``brainmask.nii.gz``). Point ``root`` at ONE
variant of the distribution (``raw/`` or ``coregistered/``): the label must lie on the grid of the
requested sequence (in ``raw/`` it is on one sequence's grid only; the others are excluded as grid
mismatches). Label required, binary.

``atlas`` - ATLAS v2.0 (BIDS, T1 only): ``.../sub-r001s001/ses-1/anat/sub-r001s001_ses-1[_space-
MNI152NLin2009aSym]_T1w.nii.gz`` with ``..._label-L_desc-T1lesion_mask.nii.gz`` next to it. Label
required, binary. The images are in MNI152NLin2009aSym space; set ``registered=True`` only if the
pre-processing template is that space.

``wmh`` - WMH Segmentation Challenge: ``<site>/<id>/pre/{T1,FLAIR}.nii.gz`` and
``<site>/<id>/wmh.nii.gz`` (the test release nests one level deeper, ``Amsterdam/GE3T/100``); subject
id = the folder path joined by ``_`` (``Utrecht_0``). ``image_dir`` (default ``pre``) and
``image_names`` (``{"t1": "T1.nii.gz", "flair": "FLAIR.nii.gz"}``) locate the images. Label values
0 = background, 1 = WMH, 2 = other pathology; ``other_pathology`` decides what 2 means:
``"ignore"`` (default) - label 2 is background (``seg_lesion_values="1"``,
``seg_ignore_values=""``); ``"exclude"`` - label 2 voxels are removed from evaluation
(``seg_lesion_values="1"``, ``seg_ignore_values="2"``); ``"lesion"`` - label 2 counts as lesion
(``seg_lesion_values=""``, as the author's evaluation, which binarises labels at > 0).
A subject needs at least one WMH (value 1) voxel.

``bids`` - any BIDS data set: images ``sub-<id>[_ses-<s>][_<key>-<value>...]_<suffix>.nii[.gz]``
anywhere below ``root`` (raw data and ``derivatives/``); ``suffix`` (default from the sequence:
t1 ``T1w``, t2 ``T2w``, flair ``FLAIR``) and ``entities`` (e.g. ``{"acq": "mprage"}``) select the
image, ``mask_suffix`` (``mask``) and ``mask_entities`` (e.g. ``{"label": "L", "desc":
"T1lesion"}``; by default any mask whose ``desc`` is not ``brain``) the lesion label, and
``brain_mask_entities`` (e.g. ``{"desc": "brain"}``) an optional brain mask. Files match the
image by ``sub`` and ``ses``. Subject id ``sub-<id>`` (``sub-<id>_ses-<s>`` when a subject has
several sessions). Age/sex from ``participants.tsv`` (``participant_id``, ``age``, ``sex``).
``require_label`` (default False).

``csv`` - a table (``.csv`` comma, ``.tsv`` tab) given as ``root`` or as ``table`` inside
``root``, one row per subject. Columns: ``subject``; the image as ``image``, ``image_<sequence>``
or ``<sequence>``; optional ``seg`` (lesion label), ``mask`` (brain mask), ``age``, ``sex``,
``registered``, ``skull_stripped`` (per-row flags). Relative paths are relative to the table's
folder. Label values {0, 1} unless ``label_values`` says otherwise.

``author_split`` - the split CSVs of the author's public code (Behrendt et al.): folder
``splits_dir`` (default ``<root>/splits``) with ``<dataset>_train_fold<k>.csv``,
``<dataset>_val_fold<k>.csv``, ``<dataset>_test.csv`` (healthy: ``dataset="IXI"``) or
``<dataset>_val.csv`` / ``<dataset>_test.csv`` (``Brats21``, ``MSLUB``, ``ATLAS_v2``, ``WMH``),
columns ``img_path, mask_path, seg_path, age, label`` (+ ``SEX_ID`` / ``sex``; a leading pandas
index column is ignored). Their paths (``/Train/ixi/t1/IXI105-HH-1471_t1.nii.gz``) are rebased
onto ``root`` (the author's ``<DATA_DIR>/Data`` folder, i.e. the ~37 GB pre-processed download),
after removing ``strip_prefix`` when given. The CSVs name T1 files; ``sequence="t2"`` replaces
``t1`` by ``t2`` in the folder names and the ``_t1`` file-name suffix, as the author's loader does.
``mask_path`` is the brain mask (``brain_mask``), ``seg_path`` the label (required where
``label`` is 1). IXI rows not listed in ``avail_t2.csv`` are excluded, as the author keeps only
subjects with a T2 scan (``available_list``: ``"auto"`` = that file for IXI when present, a path,
or None). Rows get ``registered=True, skull_stripped=True`` (``preprocessed=False`` for raw
data) and ``split`` = every CSV the subject is listed in (``train/0,train/1,val/2,...`` or
``test``, ``val``).

``phantom`` - the built-in phantom cohort (``participants.tsv`` written by
:func:`brainuad.data.phantom.generate_cohort`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from brainuad.data.manifest import MANIFEST_COLUMNS, file_checksum
from brainuad.data.nifti import _READ_ERRORS, _check_finite, _check_geometry, _describe, _raw_voxel_size
from brainuad.data.nifti import _read_volume, check_same_grid, load_image
from brainuad.errors import InputDataError

__all__ = [
    "ADAPTER_COLUMNS",
    "EXCLUSION_KEYS",
    "KINDS",
    "label_arrays",
    "manifest_frame",
    "scan",
    "scan_atlas",
    "scan_author_split",
    "scan_bids",
    "scan_brats",
    "scan_csv",
    "scan_ixi",
    "scan_mslub",
    "scan_phantom",
    "scan_wmh",
    "splits_from_manifest",
]

#: Columns of the rows: the manifest columns, then the adapter columns.
ADAPTER_COLUMNS = [*MANIFEST_COLUMNS, "seg_sha256", "brain_mask", "registered", "skull_stripped",
                   "seg_lesion_values", "seg_ignore_values", "split"]
#: Keys of one exclusion record.
EXCLUSION_KEYS = ("source", "subject", "file", "reason")

_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_SUBJECT_BAD = re.compile(r"[^A-Za-z0-9_.+-]")
_CHECKS = ("full", "header")


# =========================================================================================
# small helpers
# =========================================================================================


def _stem(name: str) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    return _NIFTI.sub("", name)


def _subject_id(text: str) -> str:
    return _SUBJECT_BAD.sub("_", str(text).strip()) or "_"


def _abspath(path: Path | str) -> str:
    return os.path.abspath(os.fspath(path))


def _age(value) -> float | str:
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return "" if pd.isna(number) else float(number)


_SEX = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}


def _sex(value, numeric: Mapping[int, str] | None = None) -> str:
    """``"M"``, ``"F"`` or ``""``; ``numeric`` maps integer codes (IXI: 1 = M, 2 = F)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if numeric is not None:
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        if not pd.isna(number) and float(number).is_integer():
            return numeric.get(int(number), "")
    return _SEX.get(str(value).strip().lower(), "")


def _read_table(path: Path) -> pd.DataFrame:
    """Read a CSV / TSV / XLS(X) table read-only; problems raise InputDataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(path, "table does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".xls", ".xlsx"):
            try:
                return pd.read_excel(path, sheet_name=0, engine="xlrd" if suffix == ".xls" else "openpyxl")
            except ImportError as error:
                raise InputDataError(path, f"reading {suffix} needs an Excel reader that is not installed "
                                           f"({_describe(error)}); export the sheet as CSV and give that "
                                           "file instead") from error
        sep = "\t" if suffix in (".tsv", ".txt") else ("," if suffix == ".csv" else None)
        return pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False)
    except InputDataError:
        raise
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise InputDataError(path, f"cannot be read as a table ({_describe(error)})") from error


def _column(table: pd.DataFrame, names: Iterable[str]) -> str | None:
    """First column of ``table`` whose name matches one of ``names`` (case-insensitive)."""
    lower = {str(c).strip().lower(): c for c in table.columns}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


_ID_COLUMNS = ("participant_id", "subject", "subject_id", "id", "brats21id", "brats20id", "brats19_id",
               "brats_id", "patient", "patient_id")


def _participants(path: Path | None, *, id_columns: Sequence[str] = _ID_COLUMNS,
                  key: Callable[[str], str] = _subject_id) -> dict[str, tuple[float | str, str]]:
    """``{key(id): (age, sex)}`` from a participants table (first matching id column)."""
    if path is None:
        return {}
    table = _read_table(path)
    id_col = _column(table, id_columns) or table.columns[0]
    age_col = _column(table, ("age", "age_years"))
    sex_col = _column(table, ("sex", "gender"))
    out: dict[str, tuple[float | str, str]] = {}
    for rec in table.to_dict("records"):
        ident = str(rec[id_col]).strip()
        if not ident:
            continue
        age = _age(rec[age_col]) if age_col else ""
        sex = _sex(rec[sex_col]) if sex_col else ""
        previous = out.get(key(ident))
        if previous is None or (previous[0] == "" and age != ""):
            out[key(ident)] = (age, sex)
    return out


def _resolve(path: str | Path | None, root: Path) -> Path | None:
    if path is None or str(path) == "":
        return None
    path = Path(path)
    return path if path.is_absolute() else root / path


def _check_root(root: str | Path, kind: str, *, file_ok: bool = False) -> Path:
    root = Path(root)
    if not root.exists():
        raise InputDataError(root, f"{kind} data folder does not exist")
    if not file_ok and not root.is_dir():
        raise InputDataError(root, f"{kind} data root must be a folder")
    return root


# =========================================================================================
# candidates and their validation
# =========================================================================================


@dataclass
class _Candidate:
    """One subject as found in a layout, before any file is opened."""

    subject: str
    where: Path  # folder (or table) the subject was found in; named when no file can be
    images: dict[str, Path] = field(default_factory=dict)  # sequence -> file
    expected: dict[str, str] = field(default_factory=dict)  # sequence -> what was looked for
    seg: Path | None = None
    seg_expected: str = ""
    brain_mask: Path | None = None
    age: float | str = ""
    sex: str = ""
    split: str = ""
    require_label: bool | None = None  # per-subject override of the policy
    registered: bool | None = None
    skull_stripped: bool | None = None
    problem: InputDataError | None = None  # layout problem found while scanning (ambiguous files, ...)


@dataclass
class _Policy:
    kind: str
    source: str
    sequence: str
    require_sequences: tuple[str, ...] = ()
    require_label: bool = False
    label_values: tuple[int, ...] | None = (0, 1)
    lesion_values: tuple[int, ...] = ()  # () = every value > 0
    ignore_values: tuple[int, ...] = ()
    allow_empty_label: bool = False
    registered: bool = False
    skull_stripped: bool = False
    check: str = "full"
    strict: bool = False
    workers: int = 1


def _values(values) -> tuple[int, ...] | None:
    if values is None:
        return None
    if isinstance(values, (int, np.integer)):
        values = [values]
    return tuple(sorted({int(v) for v in values}))


def _policy(kind: str, *, sequence: str, source: str | None, require_sequences, check: str, strict: bool,
            workers: int, **fields) -> _Policy:
    if check not in _CHECKS:
        raise ValueError(f"check must be one of {_CHECKS}, got {check!r}")
    sequence = str(sequence).lower()
    required = tuple(dict.fromkeys(str(s).lower() for s in (require_sequences or ()) if str(s).lower() != sequence))
    for name in ("label_values", "lesion_values", "ignore_values"):
        if name in fields:
            fields[name] = _values(fields[name]) if name == "label_values" else (_values(fields[name]) or ())
    return _Policy(kind=kind, source=source or kind, sequence=sequence, require_sequences=required, check=check,
                   strict=bool(strict), workers=max(1, int(workers)), **fields)


def _header_geometry(path: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Header-only checks of a NIfTI file: exists, readable header, 3D, plausible geometry."""
    if not path.exists():
        raise InputDataError(path, "file does not exist")
    if not path.is_file():
        raise InputDataError(path, "is not a regular file")
    try:
        image = nib.load(str(path), mmap=False)  # reads the header only; voxels stay on disk
    except _READ_ERRORS as error:
        raise InputDataError(path, f"cannot be read as NIfTI ({_describe(error)})") from error
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputDataError(path, f"is a {type(image).__name__}, not a NIfTI-1/2 image")
    shape = tuple(int(n) for n in image.shape)
    if len(shape) < 3:
        raise InputDataError(path, f"is {len(shape)}D (shape {shape}); a 3D volume is required")
    if any(n != 1 for n in shape[3:]):
        raise InputDataError(path, f"is {len(shape)}D with shape {shape}; a single 3D volume is required "
                                   "(split time series / multi-channel files into one file per volume)")
    affine = np.asarray(image.affine, dtype=np.float64)
    _check_geometry(affine, _raw_voxel_size(image, path), path)
    return shape[:3], affine


def _image_geometry(path: Path, check: str) -> tuple[tuple[int, int, int], np.ndarray]:
    if check == "header":
        return _header_geometry(path)
    image = load_image(path)  # full read: truncation, 4D, NaN/Inf, all-zero, geometry
    return tuple(int(n) for n in image.shape[:3]), np.asarray(image.affine)


def _format_values(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:10])
    return shown + (", ..." if values.size > 10 else "")


def _read_on_image_grid(path: Path, image_path: Path, shape, affine, check: str):
    """Check that ``path`` lies on the image's grid; with ``check="full"`` also read it (finite values) and
    return its data, with ``check="header"`` return None after the header-only check."""
    if check == "header":
        other_shape, other_affine = _header_geometry(path)
        check_same_grid(path, other_shape, other_affine, image_path, shape, affine)
        return None
    data, other_affine = _read_volume(path)
    _check_finite(data, path)
    check_same_grid(path, data.shape, other_affine, image_path, shape, affine)
    return data


def _check_label(path: Path, image_path: Path, shape, affine, policy: _Policy) -> None:
    """Grid, value and emptiness checks of a lesion label against its image."""
    data = _read_on_image_grid(path, image_path, shape, affine, policy.check)
    if data is None:
        return
    values = np.unique(data)
    if values.size and values[0] < 0:
        raise InputDataError(path, f"label contains negative values ({_format_values(values)})")
    if not np.all(values == np.round(values)):
        raise InputDataError(path, f"label has non-integer values ({_format_values(values)}); "
                                   "an interpolated or probabilistic map is not a label")
    if policy.label_values is not None:
        unexpected = sorted(set(values.astype(int).tolist()) - set(policy.label_values))
        if unexpected:
            allowed = ", ".join(str(v) for v in policy.label_values)
            raise InputDataError(path, f"label values {_format_values(values)} are not all in the expected "
                                       f"{{{allowed}}} (unexpected {unexpected[:10]}); "
                                       + ("the label is not binary" if policy.label_values == (0, 1) else
                                          "wrong file or wrong label_values option"))
    if not policy.allow_empty_label:
        lesion = np.isin(data, policy.lesion_values) if policy.lesion_values else data > 0
        if not lesion.any():
            what = ("no lesion voxel" if not policy.lesion_values else
                    f"no voxel with lesion value(s) {list(policy.lesion_values)}")
            raise InputDataError(path, f"label is empty ({what}); a lesion is required for this data set "
                                       "(allow_empty_label=True accepts it)")


def _check_brain_mask(path: Path, image_path: Path, shape, affine, check: str) -> None:
    data = _read_on_image_grid(path, image_path, shape, affine, check)
    if data is None:
        return
    values = np.unique(data)
    if not set(values.tolist()) <= {0.0, 1.0}:
        raise InputDataError(path, f"brain mask is not binary (values {_format_values(values)})")
    if not (data > 0).any():
        raise InputDataError(path, "brain mask is empty")


def _missing(candidate: _Candidate, sequence: str) -> InputDataError:
    expected = candidate.expected.get(sequence) or str(candidate.where)
    return InputDataError(expected, f"missing {sequence.upper()} image of subject {candidate.subject} "
                                    "(no file found at this path / pattern)")


def _validate(candidate: _Candidate, policy: _Policy) -> dict[str, Any]:
    """Open the subject's files read-only, check them and return its row (or raise InputDataError)."""
    if candidate.problem is not None:
        raise candidate.problem
    image = candidate.images.get(policy.sequence)
    if image is None:
        raise _missing(candidate, policy.sequence)
    for sequence in policy.require_sequences:
        if candidate.images.get(sequence) is None:
            raise _missing(candidate, sequence)
    shape, affine = _image_geometry(image, policy.check)
    for sequence in policy.require_sequences:
        _image_geometry(candidate.images[sequence], policy.check)
    require_label = policy.require_label if candidate.require_label is None else candidate.require_label
    if candidate.seg is None and require_label:
        expected = candidate.seg_expected or str(candidate.where)
        raise InputDataError(expected, f"missing lesion label of subject {candidate.subject} "
                                       "(no file found at this path / pattern)")
    if candidate.seg is not None:
        _check_label(candidate.seg, image, shape, affine, policy)
    if candidate.brain_mask is not None:
        _check_brain_mask(candidate.brain_mask, image, shape, affine, policy.check)
    registered = policy.registered if candidate.registered is None else candidate.registered
    stripped = policy.skull_stripped if candidate.skull_stripped is None else candidate.skull_stripped
    has_seg = candidate.seg is not None
    return {
        "subject": candidate.subject,
        "image": _abspath(image),
        "seg": _abspath(candidate.seg) if has_seg else "",
        "age": candidate.age,
        "sex": candidate.sex,
        "sequence": policy.sequence,
        "sha256": file_checksum(image),
        "seg_sha256": file_checksum(candidate.seg) if has_seg else "",
        "brain_mask": _abspath(candidate.brain_mask) if candidate.brain_mask is not None else "",
        "registered": bool(registered),
        "skull_stripped": bool(stripped),
        "seg_lesion_values": ",".join(str(v) for v in policy.lesion_values) if has_seg else "",
        "seg_ignore_values": ",".join(str(v) for v in policy.ignore_values) if has_seg else "",
        "split": candidate.split,
    }


def _exclusion(policy: _Policy, subject: str, error: InputDataError) -> dict[str, str]:
    return {"source": policy.source, "subject": subject, "file": error.path, "reason": str(error)}


def _build(candidates: list[_Candidate], policy: _Policy, root: Path,
           exclusions: list[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """Validate every candidate; duplicates and bad subjects go to the exclusions."""
    exclusions = list(exclusions or [])
    if not candidates and not exclusions:
        raise InputDataError(root, f"no {policy.kind} subjects found below this folder; see the layout in "
                                   "brainuad.data.adapters")
    candidates = sorted(candidates, key=lambda c: (c.subject, str(c.where)))
    seen: dict[str, _Candidate] = {}
    unique = []
    for candidate in candidates:
        if candidate.subject in seen:
            other = seen[candidate.subject]
            error = InputDataError(candidate.where, f"subject id {candidate.subject} occurs twice (also at "
                                                    f"{other.where}); point root at one copy of the data")
            if policy.strict:
                raise error
            exclusions.append(_exclusion(policy, candidate.subject, error))
            continue
        seen[candidate.subject] = candidate
        unique.append(candidate)

    def run(candidate: _Candidate):
        try:
            return _validate(candidate, policy), None
        except InputDataError as error:
            if policy.strict:
                raise
            return None, _exclusion(policy, candidate.subject, error)

    if policy.workers > 1 and len(unique) > 1:
        with ThreadPoolExecutor(policy.workers) as pool:
            results = list(pool.map(run, unique))
    else:
        results = [run(c) for c in unique]
    rows = [row for row, _ in results if row is not None]
    exclusions += [bad for _, bad in results if bad is not None]
    return rows, exclusions


def _common(kind: str, sequence: str, options: dict, **defaults) -> _Policy:
    """Policy from the common options (``options`` is consumed) over the layout's defaults."""
    keys = ("source", "require_sequences", "check", "strict", "workers", "label_values", "allow_empty_label",
            "registered", "skull_stripped", "require_label")
    settings = {"source": None, "require_sequences": (), "check": "full", "strict": False, "workers": 1,
                **defaults}
    for key in keys:
        if key in options:
            settings[key] = options.pop(key)
    if options:
        raise TypeError(f"scan_{kind}: unknown option(s) {sorted(options)}")
    return _policy(kind, sequence=sequence, **settings)


# =========================================================================================
# layouts
# =========================================================================================

_IXI_FILE = re.compile(r"^(?P<subject>IXI(?P<number>\d+)-[A-Za-z]+-\d+)-(?P<seq>T1|T2|PD|MRA|DTI-\d+)\.nii(\.gz)?$",
                       re.IGNORECASE)
_IXI_SEQUENCES = ("t1", "t2")


def _ixi_demographics(path: Path | None) -> dict[int, tuple[float | str, str]]:
    if path is None:
        return {}
    table = _read_table(path)
    id_col, sex_col, age_col = (_column(table, (n,)) for n in ("IXI_ID", "SEX_ID", "AGE"))
    if id_col is None:
        raise InputDataError(path, f"has no IXI_ID column (columns: {list(table.columns)[:12]})")
    out: dict[int, tuple[float | str, str]] = {}
    for rec in table.to_dict("records"):
        number = pd.to_numeric(pd.Series([rec[id_col]]), errors="coerce").iloc[0]
        if pd.isna(number):
            continue
        age = _age(rec[age_col]) if age_col else ""
        sex = _sex(rec[sex_col], numeric={1: "M", 2: "F"}) if sex_col else ""
        previous = out.get(int(number))
        if previous is None or (previous[0] == "" and age != ""):  # IXI.xls repeats some ids
            out[int(number)] = (age, sex)
    return out


def scan_ixi(root: str | Path, *, sequence: str = "t1", demographics: str | Path | None = None,
             require_all_sequences: bool = False, **options) -> tuple[list[dict], list[dict]]:
    """IXI healthy subjects (layout ``ixi`` in the module docstring).

    Parameters
    ----------
    root : path
        Folder with the unpacked IXI NIfTI files (searched recursively).
    sequence : {"t1", "t2", "pd"}
        Image written to the rows.
    demographics : path, optional
        ``IXI.xls`` or a CSV/TSV export (``IXI_ID, SEX_ID, AGE``); default ``IXI.xls`` /
        ``IXI.csv`` / ``IXI.tsv`` in ``root`` when present.
    require_all_sequences : bool
        Keep only subjects that also have the other of T1 / T2.
    **options
        Common options (module docstring).

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = _check_root(root, "IXI")
    if require_all_sequences:
        options["require_sequences"] = [*_IXI_SEQUENCES, *options.get("require_sequences", ())]
    policy = _common("ixi", sequence, options, require_label=False)
    if demographics is None:
        demographics = next((root / n for n in ("IXI.xls", "IXI.csv", "IXI.tsv") if (root / n).is_file()), None)
    demo = _ixi_demographics(_resolve(demographics, root))
    subjects: dict[str, _Candidate] = {}
    for path in sorted(root.rglob("IXI*")):
        match = _IXI_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        name = match["subject"]
        candidate = subjects.get(name)
        if candidate is None:
            age, sex = demo.get(int(match["number"]), ("", ""))
            candidate = subjects[name] = _Candidate(subject=_subject_id(name), where=path.parent, age=age, sex=sex)
        seq = match["seq"].lower()
        if seq in candidate.images:
            candidate.problem = InputDataError(path, f"second {seq.upper()} file of {name} (also "
                                                     f"{candidate.images[seq]})")
        candidate.images.setdefault(seq, path)
    for name, candidate in subjects.items():
        for seq in {policy.sequence, *policy.require_sequences}:
            candidate.expected[seq] = str(candidate.where / f"{name}-{seq.upper()}.nii.gz")
    return _build(list(subjects.values()), policy, root)


_BRATS_FILE = re.compile(r"^(?P<subject>.+?)[_-](?P<kind>t1ce|t1gd|t1c|t1n|t1|t2w|t2f|t2|flair|seg)\.nii(\.gz)?$",
                         re.IGNORECASE)
_BRATS_KIND = {"t1n": "t1", "t1c": "t1ce", "t1gd": "t1ce", "t2w": "t2", "t2f": "flair"}
_BRATS_SEQUENCES = ("t1", "t1ce", "t2", "flair")


def scan_brats(root: str | Path, *, sequence: str = "t2", require_all_sequences: bool = False,
               grades: Sequence[str] | None = None, participants: str | Path | None = None,
               **options) -> tuple[list[dict], list[dict]]:
    """BraTS 2019 / 2020 / 2021 / 2023 (layout ``brats`` in the module docstring).

    Parameters
    ----------
    root : path
        Folder containing the subject folders (searched recursively).
    sequence : {"t1", "t1ce", "t2", "flair"}
    require_all_sequences : bool
        Keep only subjects with all four sequences.
    grades : list of str, optional
        Keep subjects below these grade folders only (BraTS 2019: ``HGG``, ``LGG``).
    participants : path, optional
        Table with an id column and ``Age`` (e.g. ``survival_data.csv``), relative to ``root``.
    **options
        Common options; defaults ``registered=True, skull_stripped=True``, label values
        {0, 1, 2, 3, 4} fused to one tumour mask, label required.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = _check_root(root, "BraTS")
    if require_all_sequences:
        options["require_sequences"] = [*_BRATS_SEQUENCES, *options.get("require_sequences", ())]
    policy = _common("brats", sequence, options, require_label=True, label_values=(0, 1, 2, 3, 4),
                     registered=True, skull_stripped=True)
    demo = _participants(_resolve(participants, root))
    wanted = None if grades is None else {g.lower() for g in grades}
    subjects: dict[tuple[Path, str], _Candidate] = {}
    for path in sorted(root.rglob("*.nii*")):
        match = _BRATS_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        if wanted is not None and not {p.lower() for p in path.relative_to(root).parts[:-1]} & wanted:
            continue
        key = (path.parent, match["subject"])
        candidate = subjects.get(key)
        if candidate is None:
            age, sex = demo.get(_subject_id(match["subject"]), ("", ""))
            candidate = subjects[key] = _Candidate(subject=_subject_id(match["subject"]), where=path.parent,
                                                   age=age, sex=sex)
            for seq in _BRATS_SEQUENCES:
                candidate.expected[seq] = str(path.parent / f"{match['subject']}_{seq}.nii.gz")
            candidate.seg_expected = str(path.parent / f"{match['subject']}_seg.nii.gz")
        kind = _BRATS_KIND.get(match["kind"].lower(), match["kind"].lower())
        if kind == "seg":
            candidate.seg = path
        else:
            candidate.images[kind] = path
    return _build(list(subjects.values()), policy, root)


_MSLUB_GLOBS = {"t1": "*T1W.nii.gz", "t1ce": "*T1WKS.nii.gz", "t2": "*T2W.nii.gz", "flair": "*FLAIR.nii.gz"}


def _glob_one(folder: Path, pattern: str, what: str) -> tuple[Path | None, InputDataError | None]:
    found = sorted(p for p in folder.glob(pattern) if p.is_file())
    if len(found) > 1:
        return None, InputDataError(folder, f"{len(found)} files match the {what} pattern {pattern!r} "
                                            f"({', '.join(p.name for p in found[:4])}); make the pattern unique")
    return (found[0] if found else None), None


def scan_mslub(root: str | Path, *, sequence: str = "t2", globs: Mapping[str, str] | None = None,
               seg_glob: str = "*consensus_gt.nii.gz", brain_mask_glob: str | None = None,
               subject_glob: str = "patient*", participants: str | Path | None = None,
               **options) -> tuple[list[dict], list[dict]]:
    """MSLUB (layout ``mslub`` in the module docstring).

    Parameters
    ----------
    root : path
        Folder containing the ``patientNN`` folders (searched recursively).
    sequence : {"t1", "t1ce", "t2", "flair"}
    globs : mapping, optional
        ``{sequence: glob}`` inside a patient folder, over the defaults.
    seg_glob, brain_mask_glob : str
        Globs of the consensus lesion label and of an optional brain mask.
    subject_glob : str
        Folder-name pattern of a patient.
    participants : path, optional
        Table with an id column (``patient``, ``subject``, ...), ``age``, ``sex``.
    **options
        Common options; label required and binary.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = _check_root(root, "MSLUB")
    patterns = {**_MSLUB_GLOBS, **{str(k).lower(): v for k, v in (globs or {}).items()}}
    policy = _common("mslub", sequence, options, require_label=True)
    for seq in (policy.sequence, *policy.require_sequences):
        if seq not in patterns:
            raise ValueError(f"scan_mslub: no glob for sequence {seq!r}; give globs={{{seq!r}: '...'}}")
    demo = _participants(_resolve(participants, root))
    folders = sorted({p for p in ([root] if fnmatch(root.name, subject_glob) else []) + list(root.rglob(subject_glob))
                      if p.is_dir()})
    candidates = []
    for folder in folders:
        candidate = _Candidate(subject=_subject_id(folder.name), where=folder)
        candidate.age, candidate.sex = demo.get(candidate.subject, ("", ""))
        for seq, pattern in patterns.items():
            candidate.expected[seq] = str(folder / pattern)
            found, problem = _glob_one(folder, pattern, seq.upper())
            candidate.problem = candidate.problem or problem
            if found is not None:
                candidate.images[seq] = found
        candidate.seg, problem = _glob_one(folder, seg_glob, "label")
        candidate.problem = candidate.problem or problem
        candidate.seg_expected = str(folder / seg_glob)
        if brain_mask_glob:
            candidate.brain_mask, problem = _glob_one(folder, brain_mask_glob, "brain mask")
            candidate.problem = candidate.problem or problem
        if candidate.images or candidate.seg is not None:
            candidates.append(candidate)
    return _build(candidates, policy, root)


# ---------------------------------------------------------------------------------- BIDS

_BIDS_SUFFIX = {"t1": "T1w", "t2": "T2w", "flair": "FLAIR", "pd": "PDw"}


def _bids_parse(name: str) -> tuple[dict[str, str], str] | None:
    """``sub-01_ses-1_desc-x_mask.nii.gz`` -> ({"sub": "01", "ses": "1", "desc": "x"}, "mask")."""
    if not _NIFTI.search(name):
        return None
    parts = _stem(name).split("_")
    if len(parts) < 2 or not parts[0].startswith("sub-"):
        return None
    entities = {}
    for part in parts[:-1]:
        key, sep, value = part.partition("-")
        if not sep or not value:
            return None
        entities[key] = value
    return entities, parts[-1]


def _matches(entities: Mapping[str, str], wanted: Mapping[str, str] | None) -> bool:
    return all(entities.get(k) == str(v) for k, v in (wanted or {}).items())


def _bids_scan(root: Path, policy: _Policy, *, suffixes: Mapping[str, str], entities: Mapping[str, str] | None,
               mask_suffix: str, mask_entities: Mapping[str, str] | None,
               brain_mask_entities: Mapping[str, str] | None, participants: Path | None
               ) -> tuple[list[dict], list[dict]]:
    files: list[tuple[Path, dict[str, str], str]] = []
    for path in sorted(root.rglob("sub-*")):
        parsed = _bids_parse(path.name)
        if parsed is not None and path.is_file():
            files.append((path, *parsed))
    demo = _participants(participants, key=lambda s: s if s.startswith("sub-") else f"sub-{s}")
    sessions: dict[str, set[str]] = {}
    for _, ent, _ in files:
        sessions.setdefault(ent["sub"], set()).add(ent.get("ses", ""))
    candidates: dict[tuple[str, str], _Candidate] = {}

    def candidate_of(path: Path, ent: dict[str, str]) -> _Candidate:
        key = (ent["sub"], ent.get("ses", ""))
        if key not in candidates:
            several = len(sessions[ent["sub"]] - {""}) > 1
            name = f"sub-{key[0]}" + (f"_ses-{key[1]}" if key[1] and several else "")
            age, sex = demo.get(f"sub-{key[0]}", ("", ""))
            candidates[key] = _Candidate(subject=_subject_id(name), where=path.parent, age=age, sex=sex)
            prefix = f"sub-{key[0]}" + (f"_ses-{key[1]}" if key[1] else "")
            for seq, suffix in suffixes.items():
                extra = "".join(f"_{k}-{v}" for k, v in (entities or {}).items())
                candidates[key].expected[seq] = str(path.parent / f"{prefix}{extra}_{suffix}.nii.gz")
            mask_extra = "".join(f"_{k}-{v}" for k, v in (mask_entities or {}).items())
            candidates[key].seg_expected = str(path.parent / f"{prefix}{mask_extra}_{mask_suffix}.nii.gz")
        return candidates[key]

    def assign(candidate: _Candidate, attribute: str, path: Path, what: str) -> None:
        current = getattr(candidate, attribute) if attribute != "images" else candidate.images.get(what)
        if current is not None and current != path:
            candidate.problem = candidate.problem or InputDataError(
                path, f"two files match the {what} of {candidate.subject} (also {current.name}); "
                      "narrow the selection with entities / mask_entities")
            return
        if attribute == "images":
            candidate.images[what] = path
        else:
            setattr(candidate, attribute, path)

    by_suffix = {suffix: seq for seq, suffix in suffixes.items()}
    for path, ent, suffix in files:
        if suffix in by_suffix and _matches(ent, entities) and "label" not in ent:
            assign(candidate_of(path, ent), "images", path, by_suffix[suffix])
    images_of = {key: c for key, c in candidates.items()}
    for path, ent, suffix in files:
        if suffix != mask_suffix:
            continue
        is_brain = brain_mask_entities is not None and _matches(ent, brain_mask_entities)
        if is_brain:
            attribute = "brain_mask"
        elif mask_entities is not None:
            if not _matches(ent, mask_entities):
                continue
            attribute = "seg"
        elif ent.get("desc", "").lower() == "brain":
            continue
        else:
            attribute = "seg"
        # a mask without a session applies to every session of its subject
        keys = [k for k in images_of if k[0] == ent["sub"] and (k[1] == ent.get("ses", k[1]))] or \
               [(ent["sub"], ent.get("ses", ""))]
        for key in keys:
            target = candidates.get(key) or candidate_of(path, ent)
            assign(target, attribute, path, "lesion mask" if attribute == "seg" else "brain mask")
    return _build(list(candidates.values()), policy, root)


def scan_bids(root: str | Path, *, sequence: str = "t1", suffix: str | None = None,
              entities: Mapping[str, str] | None = None, mask_suffix: str = "mask",
              mask_entities: Mapping[str, str] | None = None, brain_mask_entities: Mapping[str, str] | None = None,
              participants: str | Path | None = "participants.tsv", **options) -> tuple[list[dict], list[dict]]:
    """Any BIDS data set (layout ``bids`` in the module docstring).

    Parameters
    ----------
    root : path
        BIDS root (raw data and ``derivatives/`` are searched recursively).
    sequence : str
        Sequence name written to the rows.
    suffix : str, optional
        BIDS suffix of the image (default from ``sequence``: T1w, T2w, FLAIR, PDw).
    entities : mapping, optional
        Entities the image file must have (e.g. ``{"acq": "mprage", "run": "1"}``).
    mask_suffix : str
        Suffix of the lesion label (default ``mask``).
    mask_entities : mapping, optional
        Entities the lesion label must have; default any ``mask`` whose ``desc`` is not ``brain``.
    brain_mask_entities : mapping, optional
        Entities of a brain mask (e.g. ``{"desc": "brain"}``) written to ``brain_mask``.
    participants : path or None
        Participants table (``participant_id``, ``age``, ``sex``) relative to ``root``; ignored
        when absent.
    **options
        Common options; ``require_label`` default False, binary labels.
        ``require_sequences`` needs ``sequence_suffixes={seq: suffix}`` for non-default names.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = _check_root(root, "BIDS")
    sequence_suffixes = dict(options.pop("sequence_suffixes", {}) or {})
    policy = _common("bids", sequence, options, require_label=False)
    suffixes = {**_BIDS_SUFFIX, **sequence_suffixes}
    suffixes[policy.sequence] = suffix or suffixes.get(policy.sequence, policy.sequence)
    wanted = {s: suffixes[s] for s in (policy.sequence, *policy.require_sequences) if s in suffixes}
    for seq in policy.require_sequences:
        if seq not in wanted:
            raise ValueError(f"scan_bids: no BIDS suffix known for sequence {seq!r}; give sequence_suffixes")
    table = _resolve(participants, root)
    return _bids_scan(root, policy, suffixes=wanted, entities=entities, mask_suffix=mask_suffix,
                      mask_entities=mask_entities, brain_mask_entities=brain_mask_entities,
                      participants=table if table is not None and table.is_file() else None)


def scan_atlas(root: str | Path, *, sequence: str = "t1", entities: Mapping[str, str] | None = None,
               mask_entities: Mapping[str, str] | None = None, participants: str | Path | None = "participants.tsv",
               **options) -> tuple[list[dict], list[dict]]:
    """ATLAS v2.0 (layout ``atlas`` in the module docstring); T1 only.

    Parameters
    ----------
    root : path
        The ATLAS folder (e.g. ``ATLAS_2/Training``), searched recursively.
    sequence : "t1"
    entities : mapping, optional
        Extra entities of the image file (e.g. ``{"space": "MNI152NLin2009aSym"}``).
    mask_entities : mapping, optional
        Entities of the lesion mask, default ``{"label": "L", "desc": "T1lesion"}``.
    participants : path or None
        Optional participants table.
    **options
        Common options; label required and binary.

    Returns
    -------
    rows, exclusions : list of dict
    """
    if str(sequence).lower() != "t1":
        raise ValueError(f"ATLAS has T1 images only, not {sequence!r}")
    options.setdefault("require_label", True)
    return scan_bids(root, sequence="t1", suffix="T1w", entities=entities, mask_suffix="mask",
                     mask_entities=mask_entities or {"label": "L", "desc": "T1lesion"},
                     participants=participants, **options)


_WMH_NAMES = {"t1": "T1.nii.gz", "flair": "FLAIR.nii.gz"}
_WMH_MODES = {"ignore": ((1,), ()), "exclude": ((1,), (2,)), "lesion": ((), ())}


def scan_wmh(root: str | Path, *, sequence: str = "t1", other_pathology: str = "ignore", image_dir: str = "pre",
             image_names: Mapping[str, str] | None = None, label_name: str = "wmh.nii.gz",
             participants: str | Path | None = None, require_all_sequences: bool = False,
             **options) -> tuple[list[dict], list[dict]]:
    """WMH Segmentation Challenge (layout ``wmh`` in the module docstring).

    Parameters
    ----------
    root : path
        Folder with the site folders (searched recursively).
    sequence : {"t1", "flair"}
    other_pathology : {"ignore", "exclude", "lesion"}
        Meaning of label 2: background, removed from evaluation (``seg_ignore_values="2"``), or
        lesion.
    image_dir : str
        Sub-folder of a subject with the images (``pre`` = on the label's FLAIR grid).
    image_names : mapping, optional
        ``{sequence: file name}`` over the defaults ``T1.nii.gz``, ``FLAIR.nii.gz``.
    label_name : str
        Label file in the subject folder.
    participants : path, optional
        Table with an id column (subject id as built here) and ``age`` / ``sex``.
    require_all_sequences : bool
        Keep only subjects with both T1 and FLAIR.
    **options
        Common options; label values {0, 1, 2}, label required with at least one WMH voxel.

    Returns
    -------
    rows, exclusions : list of dict
    """
    if other_pathology not in _WMH_MODES:
        raise ValueError(f"other_pathology must be one of {sorted(_WMH_MODES)}, got {other_pathology!r}")
    root = _check_root(root, "WMH")
    names = {**_WMH_NAMES, **{str(k).lower(): v for k, v in (image_names or {}).items()}}
    if require_all_sequences:
        options["require_sequences"] = [*names, *options.get("require_sequences", ())]
    lesion, ignore = _WMH_MODES[other_pathology]
    policy = _common("wmh", sequence, options, require_label=True, label_values=(0, 1, 2))
    policy.lesion_values, policy.ignore_values = lesion, ignore
    demo = _participants(_resolve(participants, root))
    folders = {p.parent for p in root.rglob(label_name) if p.is_file()}
    folders |= {p.parent for p in root.rglob(image_dir) if p.is_dir()}
    candidates = []
    for folder in sorted(folders):
        relative = folder.relative_to(root).parts if folder != root else (folder.name,)
        subject = _subject_id("_".join(relative))
        candidate = _Candidate(subject=subject, where=folder, seg_expected=str(folder / label_name))
        candidate.age, candidate.sex = demo.get(subject, ("", ""))
        for seq, name in names.items():
            path = folder / image_dir / name
            candidate.expected[seq] = str(path)
            if path.is_file():
                candidate.images[seq] = path
        if (folder / label_name).is_file():
            candidate.seg = folder / label_name
        candidates.append(candidate)
    return _build(candidates, policy, root)


# ---------------------------------------------------------------------------------- tables


def _flag(value) -> bool | None:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y"):
        return True
    if text in ("0", "false", "no", "n"):
        return False
    return None


def scan_csv(root: str | Path, *, sequence: str = "t1", table: str | Path | None = None,
             **options) -> tuple[list[dict], list[dict]]:
    """A generic table of subjects (layout ``csv`` in the module docstring).

    Parameters
    ----------
    root : path
        The CSV/TSV file, or a folder containing ``table``.
    sequence : str
        Image column ``image``, ``image_<sequence>`` or ``<sequence>``.
    table : path, optional
        Table file relative to ``root`` when ``root`` is a folder.
    **options
        Common options; ``require_label`` default False, binary labels.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = _check_root(root, "csv", file_ok=True)
    if root.is_dir():
        if table is None:
            raise ValueError("scan_csv: root is a folder; give table=<file name>")
        root = _resolve(table, root)
    policy = _common("csv", sequence, options, require_label=False)
    data = _read_table(root)
    base = root.parent
    subject_col = _column(data, ("subject", "subject_id", "participant_id", "id"))
    if subject_col is None:
        raise InputDataError(root, f"has no subject column (columns: {list(data.columns)})")

    def image_column(seq: str) -> str | None:
        if seq != policy.sequence:
            return _column(data, (f"image_{seq}", seq))
        return _column(data, (f"image_{seq}", seq)) or _column(data, ("image", "img_path"))

    columns = {seq: image_column(seq) for seq in (policy.sequence, *policy.require_sequences)}
    if columns[policy.sequence] is None:
        raise InputDataError(root, f"has no image column for {policy.sequence} (image, image_{policy.sequence} "
                                   f"or {policy.sequence}); columns: {list(data.columns)}")
    seg_col = _column(data, ("seg", "seg_path", "lesion"))
    mask_col = _column(data, ("mask", "mask_path", "brain_mask"))
    age_col, sex_col = _column(data, ("age",)), _column(data, ("sex", "gender"))
    reg_col, strip_col = _column(data, ("registered",)), _column(data, ("skull_stripped",))
    candidates = []
    for number, rec in enumerate(data.to_dict("records"), start=2):  # line 1 = header
        if not str(rec[subject_col]).strip():
            continue
        candidate = _Candidate(subject=_subject_id(rec[subject_col]), where=root)
        for seq, col in columns.items():
            candidate.expected[seq] = f"{root} line {number} column {col or 'image_' + seq}"
            if col is not None and str(rec[col]).strip():
                candidate.images[seq] = _resolve(str(rec[col]).strip(), base)
        candidate.seg_expected = f"{root} line {number} column seg"
        if seg_col and str(rec[seg_col]).strip():
            candidate.seg = _resolve(str(rec[seg_col]).strip(), base)
        if mask_col and str(rec[mask_col]).strip():
            candidate.brain_mask = _resolve(str(rec[mask_col]).strip(), base)
        candidate.age = _age(rec[age_col]) if age_col else ""
        candidate.sex = _sex(rec[sex_col]) if sex_col else ""
        candidate.registered = _flag(rec[reg_col]) if reg_col else None
        candidate.skull_stripped = _flag(rec[strip_col]) if strip_col else None
        candidates.append(candidate)
    return _build(candidates, policy, root)


_AUTHOR_FILE = r"^{dataset}_(?P<role>train|val|test)(?:_fold(?P<fold>\d+))?\.csv$"
_SEQUENCE_TAIL = re.compile(r"[_-](t1ce|t1|t2|flair|pd)$", re.IGNORECASE)


def _author_path(text: str, root: Path, strip_prefix: str | None) -> Path | None:
    text = str(text).strip().replace("\\", "/")
    if not text or text.lower() == "nan":
        return None
    if strip_prefix and text.startswith(strip_prefix.replace("\\", "/")):
        text = text[len(strip_prefix):]
    return root / text.lstrip("/")


def _swap_sequence(path: Path, old: str, new: str) -> Path:
    """``.../t1/X_t1.nii.gz`` -> ``.../t2/X_t2.nii.gz`` (folder names and the file-name suffix)."""
    if old == new:
        return path
    parts = [new if p == old else p for p in path.parts[:-1]]
    name = re.sub(rf"([_-]){re.escape(old)}(\.nii(\.gz)?)$", rf"\g<1>{new}\g<2>", path.name, flags=re.IGNORECASE)
    return Path(*parts, name)


def scan_author_split(root: str | Path, *, dataset: str, sequence: str = "t1", splits_dir: str | Path | None = None,
                      csv_sequence: str = "t1", strip_prefix: str | None = None,
                      available_list: str | Path | None = "auto", preprocessed: bool = True,
                      **options) -> tuple[list[dict], list[dict]]:
    """The author's published split CSVs (layout ``author_split`` in the module docstring).

    Parameters
    ----------
    root : path
        Folder the CSV paths are relative to (the author's ``<DATA_DIR>/Data``).
    dataset : str
        CSV name prefix: ``IXI``, ``Brats21``, ``MSLUB``, ``ATLAS_v2``, ``WMH``.
    sequence : str
        Sequence of the rows; paths are rewritten from ``csv_sequence`` when different.
    splits_dir : path, optional
        Folder with the CSVs (default ``<root>/splits``; relative paths are relative to ``root``).
    csv_sequence : str
        Sequence the CSV paths name (``t1``).
    strip_prefix : str, optional
        Leading part of the CSV paths to drop before rebasing onto ``root``.
    available_list : "auto", path or None
        Subjects list (one column) a row must appear in; ``"auto"`` = ``avail_t2.csv`` for IXI.
    preprocessed : bool
        The files are the author's pre-processed images (registered, skull-stripped).
    **options
        Common options; labels: any non-negative integers (fused), required where ``label`` is 1.

    Returns
    -------
    rows, exclusions : list of dict
        ``split`` holds the subject's memberships (``train/<k>``, ``val/<k>``, ``test``, ``val``).
    """
    root = _check_root(root, "author split")
    sequence = str(sequence).lower()
    folder = _resolve(splits_dir, root) if splits_dir is not None else root / "splits"
    if not folder.is_dir():
        raise InputDataError(folder, "split CSV folder does not exist")
    options.setdefault("label_values", None)
    policy = _common("author_split", sequence, options, require_label=False, registered=bool(preprocessed),
                     skull_stripped=bool(preprocessed))
    pattern = re.compile(_AUTHOR_FILE.format(dataset=re.escape(dataset)), re.IGNORECASE)
    files = sorted(p for p in folder.iterdir() if pattern.match(p.name))
    if not files:
        raise InputDataError(folder, f"no split CSV named {dataset}_(train|val|test)[_fold<k>].csv")
    available = None
    if available_list == "auto":
        auto = folder / "avail_t2.csv"
        available_list = auto if dataset.lower().startswith("ixi") and auto.is_file() else None
    if available_list is not None:
        listed = _read_table(_resolve(available_list, folder))
        available = [str(v) for col in listed.columns for v in listed[col].tolist() if str(v).strip()]
    candidates: dict[str, _Candidate] = {}
    exclusions: list[dict] = []
    for csv in files:
        match = pattern.match(csv.name)
        tag = match["role"] + (f"/{int(match['fold'])}" if match["fold"] is not None else "")
        table = _read_table(csv)
        table = table[[c for c in table.columns if not str(c).startswith("Unnamed")]]
        img_col = _column(table, ("img_path",))
        if img_col is None:
            raise InputDataError(csv, f"has no img_path column (columns: {list(table.columns)[:12]})")
        mask_col, seg_col = _column(table, ("mask_path",)), _column(table, ("seg_path",))
        age_col, label_col = _column(table, ("age",)), _column(table, ("label",))
        sex_col = _column(table, ("sex", "SEX_ID"))
        for number, rec in enumerate(table.to_dict("records"), start=2):
            image = _author_path(rec[img_col], root, strip_prefix)
            if image is None:
                error = InputDataError(csv, f"line {number}: empty img_path")
                if policy.strict:
                    raise error
                exclusions.append(_exclusion(policy, f"{csv.name}:{number}", error))
                continue
            name = _SEQUENCE_TAIL.sub("", _stem(image.name))
            subject = _subject_id(name)
            if available is not None and not any(name in entry for entry in available):
                error = InputDataError(csv, f"line {number}: {name} is not listed in {Path(available_list).name} "
                                            "(the author keeps only subjects listed there)")
                if policy.strict:
                    raise error
                exclusions.append(_exclusion(policy, subject, error))
                continue
            image = _swap_sequence(image, csv_sequence.lower(), sequence)
            seg = _author_path(rec[seg_col], root, strip_prefix) if seg_col else None
            mask = _author_path(rec[mask_col], root, strip_prefix) if mask_col else None
            existing = candidates.get(subject)
            if existing is not None:
                if existing.images.get(sequence) != image:
                    existing.problem = existing.problem or InputDataError(
                        csv, f"line {number}: {subject} points to {image}, another CSV to "
                             f"{existing.images.get(sequence)}")
                existing.split = ",".join(sorted(set(existing.split.split(",")) | {tag}, key=_split_order))
                continue
            is_lesion = label_col is not None and str(rec[label_col]).strip() in ("1", "1.0")
            candidates[subject] = _Candidate(
                subject=subject, where=csv, images={sequence: image}, expected={sequence: str(image)}, seg=seg,
                seg_expected=f"{csv} line {number} column seg_path", brain_mask=mask,
                age=_age(rec[age_col]) if age_col else "",
                sex=_sex(rec[sex_col], numeric={1: "M", 2: "F"}) if sex_col else "",
                split=tag, require_label=True if is_lesion else None,
            )
    return _build(list(candidates.values()), policy, root, exclusions)


def _split_order(tag: str):
    role, _, fold = tag.partition("/")
    return (int(fold) if fold else -1, role)


def scan_phantom(root: str | Path, *, sequence: str = "t1", **options) -> tuple[list[dict], list[dict]]:
    """A phantom cohort folder (``participants.tsv`` + NIfTI files of :mod:`brainuad.data.phantom`).

    Healthy subjects have no label; pathological ones a required binary label.
    """
    root = _check_root(root, "phantom")
    policy = _common("phantom", sequence, options, require_label=False)
    table = _read_table(root / "participants.tsv")
    candidates = []
    for rec in table.to_dict("records"):
        candidate = _Candidate(subject=_subject_id(rec["subject"]), where=root / "participants.tsv",
                               age=_age(rec.get("age", "")), sex=_sex(rec.get("sex", "")))
        for seq in (policy.sequence, *policy.require_sequences):
            candidate.expected[seq] = f"{root / 'participants.tsv'} column {seq}"
            if str(rec.get(seq, "")).strip():
                candidate.images[seq] = root / str(rec[seq]).strip()
        if str(rec.get("seg", "")).strip():
            candidate.seg = root / str(rec["seg"]).strip()
        candidates.append(candidate)
    return _build(candidates, policy, root)


# =========================================================================================
# registry and conversions
# =========================================================================================

#: kind -> adapter function.
KINDS: dict[str, Callable[..., tuple[list[dict], list[dict]]]] = {
    "ixi": scan_ixi,
    "brats": scan_brats,
    "mslub": scan_mslub,
    "atlas": scan_atlas,
    "wmh": scan_wmh,
    "bids": scan_bids,
    "csv": scan_csv,
    "author_split": scan_author_split,
    "phantom": scan_phantom,
}


def scan(kind: str, root: str | Path, **options) -> tuple[list[dict], list[dict]]:
    """Run the adapter of ``kind`` on ``root``; see the module docstring for kinds and options.

    Returns
    -------
    rows : list of dict
        One per usable subject, keys :data:`ADAPTER_COLUMNS`.
    exclusions : list of dict
        ``{"source", "subject", "file", "reason"}`` per subject left out.

    Raises
    ------
    ValueError
        Unknown kind or option value.
    InputDataError
        Missing root, no subject found, unreadable table; any bad subject with ``strict=True``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown data source kind {kind!r}; expected one of {sorted(KINDS)}")
    return KINDS[kind](root, **options)


def manifest_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows -> DataFrame with the columns :data:`ADAPTER_COLUMNS` in order (empty rows allowed)."""
    return pd.DataFrame(rows, columns=ADAPTER_COLUMNS)


def splits_from_manifest(table: pd.DataFrame | list[dict]) -> dict:
    """The author's split membership (``split`` column) as a splits JSON dict.

    Healthy data (tags ``train/<k>`` / ``val/<k>``): ``{"test": [...], "folds": [{"train": [...],
    "val": [...]}, ...], "stratified": False, "origin": "author_split"}``, like
    :func:`brainuad.data.splits.healthy_splits`; pathology data: ``{"val": [...], "test": [...],
    "origin": "author_split"}`` like :func:`brainuad.data.splits.pathology_splits`. Only subjects
    present in ``table`` appear (excluded subjects drop out of every split).
    """
    records = table.to_dict("records") if isinstance(table, pd.DataFrame) else list(table)
    tags: dict[str, set[str]] = {}
    for rec in records:
        for tag in str(rec.get("split", "")).split(","):
            if tag.strip():
                tags.setdefault(tag.strip(), set()).add(str(rec["subject"]))
    if not tags:
        raise ValueError("no split membership in the table (the split column is empty)")
    folds = sorted({int(t.split("/")[1]) for t in tags if "/" in t})
    if folds:
        out = {"test": sorted(tags.get("test", ())),
               "folds": [{"train": sorted(tags.get(f"train/{k}", ())), "val": sorted(tags.get(f"val/{k}", ()))}
                         for k in range(max(folds) + 1)],
               "stratified": False}
    else:
        out = {"val": sorted(tags.get("val", ())), "test": sorted(tags.get("test", ()))}
        if "train" in tags:
            out["train"] = sorted(tags["train"])
    out["origin"] = "author_split"
    return out


def label_arrays(path: str | Path, lesion_values: str | Sequence[int] = "", ignore_values: str | Sequence[int] = ""
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a raw label read-only and split it as the manifest's value columns say.

    Parameters
    ----------
    path : path
        Raw label file.
    lesion_values, ignore_values : str or sequence of int
        The ``seg_lesion_values`` / ``seg_ignore_values`` of the row (``"1"``, ``"1,2"``, ``""``).

    Returns
    -------
    lesion : (X, Y, Z) uint8
        1 where the value is in ``lesion_values`` (every value > 0 when empty).
    ignore : (X, Y, Z) uint8 or None
        1 where the value is in ``ignore_values``; None when there are none.
    """
    def parse(values) -> tuple[int, ...]:
        if isinstance(values, str):
            return tuple(int(v) for v in values.replace(";", ",").split(",") if v.strip())
        return tuple(int(v) for v in values)

    data, _ = _read_volume(Path(path))
    _check_finite(data, Path(path))
    lesion_set, ignore_set = parse(lesion_values), parse(ignore_values)
    lesion = np.isin(data, lesion_set) if lesion_set else data > 0
    if ignore_set:
        lesion &= ~np.isin(data, ignore_set)
    ignore = np.isin(data, ignore_set).astype(np.uint8) if ignore_set else None
    return lesion.astype(np.uint8), ignore

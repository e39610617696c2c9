"""What every data source checks: subject candidates, their validation and the exclusion records.

A layout module finds its subjects as :class:`Candidate` (files expected and found, age, sex, ...,
nothing opened yet), turns the common options into a :class:`Policy` (:func:`common_policy`) and
hands both to :func:`build_rows`, which drops duplicate ids, opens every file read-only, checks it
(the checks and their order are in the docstring of :mod:`brainuad.data.sources`) and returns the
manifest rows and the exclusion records.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainuad.data.manifest import EXCLUSION_KEYS, file_checksum
from brainuad.data.nifti import READ_ERRORS, check_finite, check_geometry, check_same_grid, describe, load_image
from brainuad.data.nifti import raw_voxel_size, read_volume
from brainuad.errors import InputDataError

#: Keys of one exclusion record.
#: Options every source accepts (module docstring of :mod:`brainuad.data.sources`).
COMMON_OPTIONS = ("source", "require_sequences", "check", "strict", "workers", "label_values", "allow_empty_label",
                  "registered", "skull_stripped", "require_label")

NIFTI_NAME = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_SUBJECT_BAD = re.compile(r"[^A-Za-z0-9_.+-]")
_CHECKS = ("full", "header")


def stem(name: str) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    return NIFTI_NAME.sub("", name)


def subject_id(text: str) -> str:
    """Subject id of a name: characters outside ``[A-Za-z0-9_.+-]`` become ``_`` (``"_"`` when empty)."""
    return _SUBJECT_BAD.sub("_", str(text).strip()) or "_"


def _abspath(path: Path | str) -> str:
    return os.path.abspath(os.fspath(path))


def resolve(path: str | Path | None, root: Path) -> Path | None:
    """``path`` as given when absolute, else below ``root``; None for None or ``""``."""
    if path is None or str(path) == "":
        return None
    path = Path(path)
    return path if path.is_absolute() else root / path


def check_root(root: str | Path, kind: str, *, file_ok: bool = False) -> Path:
    """``root`` as a Path; InputDataError when it does not exist or (unless ``file_ok``) is not a folder."""
    root = Path(root)
    if not root.exists():
        raise InputDataError(root, f"{kind} data {'folder or table' if file_ok else 'folder'} does not exist")
    if not file_ok and not root.is_dir():
        raise InputDataError(root, f"{kind} data root must be a folder")
    return root


@dataclass
class Candidate:
    """One subject as found in a layout, before any file is opened."""

    subject: str
    where: Path  # folder (or table) the subject was found in; named when no file can be
    name: str = ""  # the id as found, before subject_id() replaced characters ("" = subject)
    location: str = ""  # table kinds: "<table> line <n>" of the row the subject was read from
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
class Policy:
    """What a source requires of its subjects (common options over the layout's defaults)."""

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
            workers: int, **fields) -> Policy:
    if check not in _CHECKS:
        raise ValueError(f"check must be one of {_CHECKS}, got {check!r}")
    sequence = str(sequence).lower()
    required = tuple(dict.fromkeys(str(s).lower() for s in (require_sequences or ()) if str(s).lower() != sequence))
    for name in ("label_values", "lesion_values", "ignore_values"):
        if name in fields:
            fields[name] = _values(fields[name]) if name == "label_values" else (_values(fields[name]) or ())
    return Policy(kind=kind, source=source or kind, sequence=sequence, require_sequences=required, check=check,
                   strict=bool(strict), workers=max(1, int(workers)), **fields)


def _header_geometry(path: Path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Header-only checks of a NIfTI file: exists, readable header, 3D, plausible geometry."""
    if not path.exists():
        raise InputDataError(path, "file does not exist")
    if not path.is_file():
        raise InputDataError(path, "is not a regular file")
    try:
        image = nib.load(str(path), mmap=False)  # reads the header only; voxels stay on disk
    except READ_ERRORS as error:
        raise InputDataError(path, f"cannot be read as NIfTI ({describe(error)})") from error
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputDataError(path, f"is a {type(image).__name__}, not a NIfTI-1/2 image")
    shape = tuple(int(n) for n in image.shape)
    if len(shape) < 3:
        raise InputDataError(path, f"is {len(shape)}D (shape {shape}); a 3D volume is required")
    if any(n != 1 for n in shape[3:]):
        raise InputDataError(path, f"is {len(shape)}D with shape {shape}; a single 3D volume is required "
                                   "(split time series / multi-channel files into one file per volume)")
    affine = np.asarray(image.affine, dtype=np.float64)
    check_geometry(affine, raw_voxel_size(image, path), path)
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
    data, other_affine = read_volume(path)
    check_finite(data, path)
    check_same_grid(path, data.shape, other_affine, image_path, shape, affine)
    return data


def _check_label(path: Path, image_path: Path, shape, affine, policy: Policy) -> None:
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


def _missing(candidate: Candidate, sequence: str) -> InputDataError:
    expected = candidate.expected.get(sequence) or str(candidate.where)
    return InputDataError(expected, f"missing {sequence.upper()} image of subject {candidate.subject} "
                                    "(no file found at this path / pattern)")


def _validate(candidate: Candidate, policy: Policy) -> dict[str, Any]:
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


def exclusion(policy: Policy, subject: str, error: InputDataError) -> dict[str, str]:
    """Exclusion record (keys :data:`EXCLUSION_KEYS`) of a subject left out for ``error``."""
    return {"source": policy.source, "subject": subject, "file": error.path, "reason": str(error)}


def id_collision(first: Candidate, second: Candidate) -> bool:
    """Whether two candidates got the same subject id only because :func:`subject_id` replaced characters."""
    return (first.name or first.subject) != (second.name or second.subject)


def duplicate_id(first: Candidate, second: Candidate) -> InputDataError:
    """The error for two candidates with the same subject id, naming where both were found.

    A collision made by :func:`subject_id` names both original ids; in a table (``location`` set) both
    lines; in a folder layout both folders.
    """
    places = [c.location or str(c.where) for c in (first, second)]
    if id_collision(first, second):
        return InputDataError(second.location or second.where,
                              f"subject ids {first.name or first.subject!r} ({places[0]}) and "
                              f"{second.name or second.subject!r} ({places[1]}) both become {second.subject} once "
                              "characters outside [A-Za-z0-9_.+-] are replaced by _; rename one of them")
    if second.location:
        return InputDataError(second.where, f"subject id {second.name or second.subject!r} occurs twice: "
                                            f"{places[0]} and {places[1]}; give every row its own subject id")
    return InputDataError(second.where, f"subject id {second.subject} occurs twice: at {places[0]} and at "
                                        f"{places[1]}; point root at one copy of the data")


def build_rows(candidates: list[Candidate], policy: Policy, root: Path,
           exclusions: list[dict] | None = None) -> tuple[list[dict], list[dict]]:
    """Validate every candidate; duplicates and bad subjects go to the exclusions.

    Raises
    ------
    InputDataError
        No candidate at all; two subject ids that collide after :func:`subject_id` (always); with
        ``policy.strict``, one error listing every excluded subject (:func:`strict_error`).
    """
    exclusions = list(exclusions or [])
    if not candidates and not exclusions:
        raise InputDataError(root, f"no {policy.kind} subjects found below this folder; see the layout in "
                                   f"brainuad.data.sources.{policy.kind}")
    candidates = sorted(candidates, key=lambda c: (c.subject, str(c.where)))
    seen: dict[str, Candidate] = {}
    unique = []
    for candidate in candidates:
        if candidate.subject in seen:
            error = duplicate_id(seen[candidate.subject], candidate)
            if id_collision(seen[candidate.subject], candidate):
                raise error
            exclusions.append(exclusion(policy, candidate.subject, error))
            continue
        seen[candidate.subject] = candidate
        unique.append(candidate)

    def run(candidate: Candidate):
        try:
            return _validate(candidate, policy), None
        except InputDataError as error:
            return None, exclusion(policy, candidate.subject, error)

    if policy.workers > 1 and len(unique) > 1:
        with ThreadPoolExecutor(policy.workers) as pool:
            results = list(pool.map(run, unique))
    else:
        results = [run(c) for c in unique]
    rows = [row for row, _ in results if row is not None]
    exclusions += [bad for _, bad in results if bad is not None]
    if policy.strict and exclusions:
        raise strict_error(root, policy, exclusions, len(rows))
    return rows, exclusions


def strict_error(root: Path, policy: Policy, exclusions: list[dict], usable: int) -> InputDataError:
    """One error listing every bad subject of a ``strict`` source (subject, file and reason each)."""
    listed = "".join(f"\n  - {bad['subject']}: {bad['reason']}" for bad in exclusions)
    return InputDataError(root, f"{len(exclusions)} subject(s) of this {policy.kind} data set cannot be used "
                                f"({usable} can); strict: true stops the run, without it they are excluded:{listed}")


def common_policy(kind: str, sequence: str, options: dict, **defaults) -> Policy:
    """Policy from the common options (``options`` is consumed) over the layout's defaults.

    Raises
    ------
    TypeError
        ``options`` holds a key that is not one of :data:`COMMON_OPTIONS`.
    """
    settings = {"source": None, "require_sequences": (), "check": "full", "strict": False, "workers": 1,
                **defaults}
    for key in COMMON_OPTIONS:
        if key in options:
            settings[key] = options.pop(key)
    if options:
        raise TypeError(f"scan_{kind}: unknown option(s) {sorted(options)}")
    return _policy(kind, sequence=sequence, **settings)

"""MSLUB (Lesjak et al. 2018, http://lit.fe.uni-lj.si/tools): multiple sclerosis, four sequences.

Layout: one folder per patient (``subject_glob``, default ``patient*``) anywhere below ``root``;
files matched per sequence with ``globs`` (defaults ``t1: *T1W.nii.gz``, ``t1ce: *T1WKS.nii.gz``,
``t2: *T2W.nii.gz``, ``flair: *FLAIR.nii.gz``), the consensus label with ``seg_glob``
(``*consensus_gt.nii.gz``) and an optional brain mask with ``brain_mask_glob`` (e.g.
``brainmask.nii.gz``); a pattern matching several files in one folder excludes the patient. Point
``root`` at ONE variant of the distribution (``raw/`` or ``coregistered/``): the label must lie on
the grid of the requested sequence (in ``raw/`` it is on one sequence's grid only; the others are
excluded as grid mismatches). Label required, binary.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatch
from pathlib import Path

from brainuad.data.sources.checks import Candidate, build_rows, check_root, common_policy, resolve, subject_id
from brainuad.data.sources.registry import register_source
from brainuad.data.sources.tables import read_participants
from brainuad.errors import InputDataError


_MSLUB_GLOBS = {"t1": "*T1W.nii.gz", "t1ce": "*T1WKS.nii.gz", "t2": "*T2W.nii.gz", "flair": "*FLAIR.nii.gz"}


def _glob_one(folder: Path, pattern: str, what: str) -> tuple[Path | None, InputDataError | None]:
    found = sorted(p for p in folder.glob(pattern) if p.is_file())
    if len(found) > 1:
        return None, InputDataError(folder, f"{len(found)} files match the {what} pattern {pattern!r} "
                                            f"({', '.join(p.name for p in found[:4])}); make the pattern unique")
    return (found[0] if found else None), None


@register_source("mslub")
def scan_mslub(root: str | Path, *, sequence: str = "t2", globs: Mapping[str, str] | None = None,
               seg_glob: str = "*consensus_gt.nii.gz", brain_mask_glob: str | None = None,
               subject_glob: str = "patient*", participants: str | Path | None = None,
               **options) -> tuple[list[dict], list[dict]]:
    """MSLUB (layout in the module docstring).

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
        Common options of :mod:`brainuad.data.sources`; label required and binary.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = check_root(root, "MSLUB")
    patterns = {**_MSLUB_GLOBS, **{str(k).lower(): v for k, v in (globs or {}).items()}}
    policy = common_policy("mslub", sequence, options, require_label=True)
    for seq in (policy.sequence, *policy.require_sequences):
        if seq not in patterns:
            raise ValueError(f"scan_mslub: no glob for sequence {seq!r}; give globs={{{seq!r}: '...'}}")
    demo = read_participants(resolve(participants, root))
    folders = sorted({p for p in ([root] if fnmatch(root.name, subject_glob) else []) + list(root.rglob(subject_glob))
                      if p.is_dir()})
    candidates = []
    for folder in folders:
        candidate = Candidate(subject=subject_id(folder.name), where=folder, name=folder.name)
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
    return build_rows(candidates, policy, root)

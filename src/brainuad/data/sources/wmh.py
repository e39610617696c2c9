"""WMH Segmentation Challenge: white matter hyperintensities, T1 and FLAIR.

Layout: ``<site>/<id>/pre/{T1,FLAIR}.nii.gz`` and ``<site>/<id>/wmh.nii.gz`` (the test release nests
one level deeper, ``Amsterdam/GE3T/100``); subject id = the folder path joined by ``_``
(``Utrecht_0``). ``image_dir`` (default ``pre``) and ``image_names`` (``{"t1": "T1.nii.gz",
"flair": "FLAIR.nii.gz"}``) locate the images. Label values 0 = background, 1 = WMH, 2 = other
pathology; ``other_pathology`` decides what 2 means: ``"ignore"`` (default) - label 2 is
background (``seg_lesion_values="1"``, ``seg_ignore_values=""``); ``"exclude"`` - label 2 voxels
are removed from evaluation (``seg_lesion_values="1"``, ``seg_ignore_values="2"``); ``"lesion"`` -
label 2 counts as lesion (``seg_lesion_values=""``, as the author's evaluation, which binarises
labels at > 0). A subject needs at least one WMH (value 1) voxel.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from brainuad.data.sources.checks import Candidate, build_rows, check_root, common_policy, resolve, subject_id
from brainuad.data.sources.registry import register_source
from brainuad.data.sources.tables import read_participants


_WMH_NAMES = {"t1": "T1.nii.gz", "flair": "FLAIR.nii.gz"}
_WMH_MODES = {"ignore": ((1,), ()), "exclude": ((1,), (2,)), "lesion": ((), ())}


@register_source("wmh")
def scan_wmh(root: str | Path, *, sequence: str = "t1", other_pathology: str = "ignore", image_dir: str = "pre",
             image_names: Mapping[str, str] | None = None, label_name: str = "wmh.nii.gz",
             participants: str | Path | None = None, require_all_sequences: bool = False,
             **options) -> tuple[list[dict], list[dict]]:
    """WMH Segmentation Challenge (layout in the module docstring).

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
        Common options of :mod:`brainuad.data.sources`; label values {0, 1, 2}, label required with at
        least one WMH voxel.

    Returns
    -------
    rows, exclusions : list of dict
    """
    if other_pathology not in _WMH_MODES:
        raise ValueError(f"other_pathology must be one of {sorted(_WMH_MODES)}, got {other_pathology!r}")
    root = check_root(root, "WMH")
    names = {**_WMH_NAMES, **{str(k).lower(): v for k, v in (image_names or {}).items()}}
    if require_all_sequences:
        options["require_sequences"] = [*names, *options.get("require_sequences", ())]
    lesion, ignore = _WMH_MODES[other_pathology]
    policy = common_policy("wmh", sequence, options, require_label=True, label_values=(0, 1, 2))
    policy.lesion_values, policy.ignore_values = lesion, ignore
    demo = read_participants(resolve(participants, root))
    folders = {p.parent for p in root.rglob(label_name) if p.is_file()}
    folders |= {p.parent for p in root.rglob(image_dir) if p.is_dir()}
    candidates = []
    for folder in sorted(folders):
        relative = folder.relative_to(root).parts if folder != root else (folder.name,)
        found = "_".join(relative)
        subject = subject_id(found)
        candidate = Candidate(subject=subject, where=folder, name=found, seg_expected=str(folder / label_name))
        candidate.age, candidate.sex = demo.get(subject, ("", ""))
        for seq, name in names.items():
            path = folder / image_dir / name
            candidate.expected[seq] = str(path)
            if path.is_file():
                candidate.images[seq] = path
        if (folder / label_name).is_file():
            candidate.seg = folder / label_name
        candidates.append(candidate)
    return build_rows(candidates, policy, root)

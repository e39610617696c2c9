"""BraTS 2019 / 2020 / 2021 / 2023: brain tumours, four sequences, already co-registered to SRI24
and skull-stripped (rows get ``registered=True, skull_stripped=True``).

Layout: one folder per subject, anywhere below ``root``, with
``<id>_{t1,t1ce,t2,flair,seg}.nii.gz``: 2021 ``BraTS2021_00000/BraTS2021_00000_t2.nii.gz``;
2019/2020 ``{HGG,LGG}/BraTS19_2013_10_1/BraTS19_2013_10_1_t2.nii.gz`` (``grades=["HGG"]`` keeps
one grade); 2023 names ``-t1n, -t1c, -t2w, -t2f`` are read as t1, t1ce, t2, flair. The label
(values 0, 1, 2, 3, 4) is required and fused: every value > 0 is tumour (``seg_lesion_values``
``""``). ``participants``: optional table with an id column (``BraTS19_ID``, ``BraTS21ID``,
``subject``, ...) and ``Age``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from brainuad.data.sources.checks import Candidate, build_rows, check_root, common_policy, resolve, subject_id
from brainuad.data.sources.registry import register_source
from brainuad.data.sources.tables import read_participants


_BRATS_FILE = re.compile(r"^(?P<subject>.+?)[_-](?P<kind>t1ce|t1gd|t1c|t1n|t1|t2w|t2f|t2|flair|seg)\.nii(\.gz)?$",
                         re.IGNORECASE)
_BRATS_KIND = {"t1n": "t1", "t1c": "t1ce", "t1gd": "t1ce", "t2w": "t2", "t2f": "flair"}
_BRATS_SEQUENCES = ("t1", "t1ce", "t2", "flair")


@register_source("brats")
def scan_brats(root: str | Path, *, sequence: str = "t2", require_all_sequences: bool = False,
               grades: Sequence[str] | None = None, participants: str | Path | None = None,
               **options) -> tuple[list[dict], list[dict]]:
    """BraTS 2019 / 2020 / 2021 / 2023 (layout in the module docstring).

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
        Common options of :mod:`brainuad.data.sources`; defaults ``registered=True, skull_stripped=True``, label values
        {0, 1, 2, 3, 4} fused to one tumour mask, label required.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = check_root(root, "BraTS")
    if require_all_sequences:
        options["require_sequences"] = [*_BRATS_SEQUENCES, *options.get("require_sequences", ())]
    policy = common_policy("brats", sequence, options, require_label=True, label_values=(0, 1, 2, 3, 4),
                     registered=True, skull_stripped=True)
    demo = read_participants(resolve(participants, root))
    wanted = None if grades is None else {g.lower() for g in grades}
    subjects: dict[tuple[Path, str], Candidate] = {}
    for path in sorted(root.rglob("*.nii*")):
        match = _BRATS_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        if wanted is not None and not {p.lower() for p in path.relative_to(root).parts[:-1]} & wanted:
            continue
        key = (path.parent, match["subject"])
        candidate = subjects.get(key)
        if candidate is None:
            age, sex = demo.get(subject_id(match["subject"]), ("", ""))
            candidate = subjects[key] = Candidate(subject=subject_id(match["subject"]), where=path.parent,
                                                   name=match["subject"], age=age, sex=sex)
            for seq in _BRATS_SEQUENCES:
                candidate.expected[seq] = str(path.parent / f"{match['subject']}_{seq}.nii.gz")
            candidate.seg_expected = str(path.parent / f"{match['subject']}_seg.nii.gz")
        kind = _BRATS_KIND.get(match["kind"].lower(), match["kind"].lower())
        if kind == "seg":
            candidate.seg = path
        else:
            candidate.images[kind] = path
    return build_rows(list(subjects.values()), policy, root)

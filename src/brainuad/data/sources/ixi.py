"""IXI (https://brain-development.org/ixi-dataset/): healthy subjects, T1 / T2 / PD.

Layout: NIfTI files named ``IXI<nnn>-<Site>-<nnnn>-<T1|T2|PD|MRA>.nii.gz`` anywhere below ``root``
(the unpacked ``IXI-T1.tar`` / ``IXI-T2.tar`` folders, flat or in sub-folders). Subject id
``IXI002-Guys-0828``. Demographics: ``demographics`` = the ``IXI.xls`` spreadsheet (needs the
``xlrd`` package, not installed by default) or a CSV/TSV export of it, absolute or relative to
``root``; by default ``IXI.xls`` / ``IXI.csv`` / ``IXI.tsv`` in ``root`` if present. Columns
``IXI_ID`` (the number in ``IXI002``), ``SEX_ID`` (1 = male, 2 = female) and ``AGE`` (years; empty
= unknown; the spreadsheet repeats some ids: the row with an age wins).
``require_all_sequences=True``: only subjects with both T1 and T2 (others are excluded with the
missing file named). No labels. Not registered, not skull-stripped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from brainuad.data.sources.checks import Candidate, build_rows, check_root, common_policy, resolve, subject_id
from brainuad.data.sources.registry import register_source
from brainuad.data.sources.tables import find_column, parse_age, parse_sex, read_table
from brainuad.errors import InputDataError


_IXI_FILE = re.compile(r"^(?P<subject>IXI(?P<number>\d+)-[A-Za-z]+-\d+)-(?P<seq>T1|T2|PD|MRA|DTI-\d+)\.nii(\.gz)?$",
                       re.IGNORECASE)
_IXI_SEQUENCES = ("t1", "t2")


def _ixi_demographics(path: Path | None) -> dict[int, tuple[float | str, str]]:
    if path is None:
        return {}
    table = read_table(path)
    id_col, sex_col, age_col = (find_column(table, (n,)) for n in ("IXI_ID", "SEX_ID", "AGE"))
    if id_col is None:
        raise InputDataError(path, f"has no IXI_ID column (columns: {list(table.columns)[:12]})")
    out: dict[int, tuple[float | str, str]] = {}
    for rec in table.to_dict("records"):
        number = pd.to_numeric(pd.Series([rec[id_col]]), errors="coerce").iloc[0]
        if pd.isna(number):
            continue
        age = parse_age(rec[age_col]) if age_col else ""
        sex = parse_sex(rec[sex_col], numeric={1: "M", 2: "F"}) if sex_col else ""
        previous = out.get(int(number))
        if previous is None or (previous[0] == "" and age != ""):  # IXI.xls repeats some ids
            out[int(number)] = (age, sex)
    return out


@register_source("ixi")
def scan_ixi(root: str | Path, *, sequence: str = "t1", demographics: str | Path | None = None,
             require_all_sequences: bool = False, **options) -> tuple[list[dict], list[dict]]:
    """IXI healthy subjects (layout in the module docstring).

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
        Common options of :mod:`brainuad.data.sources`.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = check_root(root, "IXI")
    if require_all_sequences:
        options["require_sequences"] = [*_IXI_SEQUENCES, *options.get("require_sequences", ())]
    policy = common_policy("ixi", sequence, options, require_label=False)
    if demographics is None:
        demographics = next((root / n for n in ("IXI.xls", "IXI.csv", "IXI.tsv") if (root / n).is_file()), None)
    demo = _ixi_demographics(resolve(demographics, root))
    subjects: dict[str, Candidate] = {}
    for path in sorted(root.rglob("IXI*")):
        match = _IXI_FILE.match(path.name)
        if not match or not path.is_file():
            continue
        name = match["subject"]
        candidate = subjects.get(name)
        if candidate is None:
            age, sex = demo.get(int(match["number"]), ("", ""))
            candidate = subjects[name] = Candidate(subject=subject_id(name), where=path.parent, name=name, age=age, sex=sex)
        seq = match["seq"].lower()
        if seq in candidate.images:
            candidate.problem = InputDataError(path, f"second {seq.upper()} file of {name} (also "
                                                     f"{candidate.images[seq]})")
        candidate.images.setdefault(seq, path)
    for name, candidate in subjects.items():
        for seq in {policy.sequence, *policy.require_sequences}:
            candidate.expected[seq] = str(candidate.where / f"{name}-{seq.upper()}.nii.gz")
    return build_rows(list(subjects.values()), policy, root)

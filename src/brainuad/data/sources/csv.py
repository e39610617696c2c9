"""A table of subjects (``.csv`` comma, ``.tsv`` tab), for data in no known layout.

Layout: the table is ``root`` itself or ``table`` inside the folder ``root``, one row per subject.
Columns: ``subject``; the image as ``image``, ``image_<sequence>`` or ``<sequence>``; optional
``seg`` (lesion label), ``mask`` (brain mask), ``age``, ``sex``, ``registered``,
``skull_stripped`` (per-row flags). Relative paths are relative to the table's folder. Label
values {0, 1} unless ``label_values`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

from brainuad.data.sources.checks import Candidate, build_rows, check_root, common_policy, resolve, subject_id
from brainuad.data.sources.registry import register_source
from brainuad.data.sources.tables import find_column, parse_age, parse_flag, parse_sex, read_table
from brainuad.errors import InputDataError


@register_source("csv")
def scan_csv(root: str | Path, *, sequence: str = "t1", table: str | Path | None = None,
             **options) -> tuple[list[dict], list[dict]]:
    """A generic table of subjects (layout in the module docstring).

    Parameters
    ----------
    root : path
        The CSV/TSV file, or a folder containing ``table``.
    sequence : str
        Image column ``image``, ``image_<sequence>`` or ``<sequence>``.
    table : path, optional
        Table file relative to ``root`` when ``root`` is a folder.
    **options
        Common options of :mod:`brainuad.data.sources`; ``require_label`` default False, binary labels.

    Returns
    -------
    rows, exclusions : list of dict
    """
    root = check_root(root, "csv", file_ok=True)
    if root.is_dir():
        if table is None:
            raise ValueError("scan_csv: root is a folder; give table=<file name>")
        root = resolve(table, root)
    policy = common_policy("csv", sequence, options, require_label=False)
    data = read_table(root)
    base = root.parent
    subject_col = find_column(data, ("subject", "subject_id", "participant_id", "id"))
    if subject_col is None:
        raise InputDataError(root, f"has no subject column (columns: {list(data.columns)})")

    def image_column(seq: str) -> str | None:
        if seq != policy.sequence:
            return find_column(data, (f"image_{seq}", seq))
        return find_column(data, (f"image_{seq}", seq)) or find_column(data, ("image", "img_path"))

    columns = {seq: image_column(seq) for seq in (policy.sequence, *policy.require_sequences)}
    if columns[policy.sequence] is None:
        raise InputDataError(root, f"has no image column for {policy.sequence} (image, image_{policy.sequence} "
                                   f"or {policy.sequence}); columns: {list(data.columns)}")
    seg_col = find_column(data, ("seg", "seg_path", "lesion"))
    mask_col = find_column(data, ("mask", "mask_path", "brain_mask"))
    age_col, sex_col = find_column(data, ("age",)), find_column(data, ("sex", "gender"))
    reg_col, strip_col = find_column(data, ("registered",)), find_column(data, ("skull_stripped",))
    candidates = []
    for number, rec in enumerate(data.to_dict("records"), start=2):  # line 1 = header
        if not str(rec[subject_col]).strip():
            continue
        name = str(rec[subject_col]).strip()
        candidate = Candidate(subject=subject_id(name), where=root, name=name, location=f"{root} line {number}")
        for seq, col in columns.items():
            candidate.expected[seq] = f"{root} line {number} column {col or 'image_' + seq}"
            if col is not None and str(rec[col]).strip():
                candidate.images[seq] = resolve(str(rec[col]).strip(), base)
        candidate.seg_expected = f"{root} line {number} column seg"
        if seg_col and str(rec[seg_col]).strip():
            candidate.seg = resolve(str(rec[seg_col]).strip(), base)
        if mask_col and str(rec[mask_col]).strip():
            candidate.brain_mask = resolve(str(rec[mask_col]).strip(), base)
        candidate.age = parse_age(rec[age_col]) if age_col else ""
        candidate.sex = parse_sex(rec[sex_col]) if sex_col else ""
        candidate.registered = parse_flag(rec[reg_col]) if reg_col else None
        candidate.skull_stripped = parse_flag(rec[strip_col]) if strip_col else None
        candidates.append(candidate)
    return build_rows(candidates, policy, root)

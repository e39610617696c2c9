"""The split CSVs of the author's public code (Behrendt et al.) over the author's pre-processed data.

Layout: folder ``splits_dir`` (default ``<root>/splits``) with ``<dataset>_train_fold<k>.csv``,
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
``test``, ``val``); :func:`brainuad.data.splits.splits_from_manifest` turns that into the splits.
"""

from __future__ import annotations

import re
from pathlib import Path

from brainuad.data.sources.checks import Candidate, build_rows, check_root, common_policy, duplicate_id, exclusion
from brainuad.data.sources.checks import id_collision, resolve, stem, subject_id
from brainuad.data.sources.registry import register_source
from brainuad.data.sources.tables import find_column, parse_age, parse_sex, read_table
from brainuad.errors import InputDataError


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


@register_source("author_split")
def scan_author_split(root: str | Path, *, dataset: str, sequence: str = "t1", splits_dir: str | Path | None = None,
                      csv_sequence: str = "t1", strip_prefix: str | None = None,
                      available_list: str | Path | None = "auto", preprocessed: bool = True,
                      **options) -> tuple[list[dict], list[dict]]:
    """The author's published split CSVs (layout in the module docstring).

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
        Common options of :mod:`brainuad.data.sources`; labels: any non-negative integers (fused),
        required where ``label`` is 1.

    Returns
    -------
    rows, exclusions : list of dict
        ``split`` holds the subject's memberships (``train/<k>``, ``val/<k>``, ``test``, ``val``).
    """
    root = check_root(root, "author split")
    sequence = str(sequence).lower()
    folder = resolve(splits_dir, root) if splits_dir is not None else root / "splits"
    if not folder.is_dir():
        raise InputDataError(folder, "split CSV folder does not exist")
    options.setdefault("label_values", None)
    policy = common_policy("author_split", sequence, options, require_label=False, registered=bool(preprocessed),
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
        listed = read_table(resolve(available_list, folder))
        available = [str(v) for col in listed.columns for v in listed[col].tolist() if str(v).strip()]
    candidates: dict[str, Candidate] = {}
    exclusions: list[dict] = []
    for csv in files:
        match = pattern.match(csv.name)
        tag = match["role"] + (f"/{int(match['fold'])}" if match["fold"] is not None else "")
        table = read_table(csv)
        table = table[[c for c in table.columns if not str(c).startswith("Unnamed")]]
        img_col = find_column(table, ("img_path",))
        if img_col is None:
            raise InputDataError(csv, f"has no img_path column (columns: {list(table.columns)[:12]})")
        mask_col, seg_col = find_column(table, ("mask_path",)), find_column(table, ("seg_path",))
        age_col, label_col = find_column(table, ("age",)), find_column(table, ("label",))
        sex_col = find_column(table, ("sex", "SEX_ID"))
        for number, rec in enumerate(table.to_dict("records"), start=2):
            image = _author_path(rec[img_col], root, strip_prefix)
            if image is None:
                error = InputDataError(csv, f"line {number}: empty img_path")
                exclusions.append(exclusion(policy, f"{csv.name}:{number}", error))
                continue
            name = _SEQUENCE_TAIL.sub("", stem(image.name))
            subject = subject_id(name)
            if available is not None and not any(name in entry for entry in available):
                error = InputDataError(csv, f"line {number}: {name} is not listed in {Path(available_list).name} "
                                            "(the author keeps only subjects listed there)")
                exclusions.append(exclusion(policy, subject, error))
                continue
            image = _swap_sequence(image, csv_sequence.lower(), sequence)
            seg = _author_path(rec[seg_col], root, strip_prefix) if seg_col else None
            mask = _author_path(rec[mask_col], root, strip_prefix) if mask_col else None
            existing = candidates.get(subject)
            location = f"{csv} line {number}"
            if existing is not None:
                row = Candidate(subject, csv, name=name, location=location)
                if id_collision(existing, row):
                    raise duplicate_id(existing, row)
                if existing.images.get(sequence) != image:
                    existing.problem = existing.problem or InputDataError(
                        csv, f"line {number}: {subject} points to {image}, {existing.location} to "
                             f"{existing.images.get(sequence)}")
                existing.split = ",".join(sorted(set(existing.split.split(",")) | {tag}, key=_split_order))
                continue
            is_lesion = label_col is not None and str(rec[label_col]).strip() in ("1", "1.0")
            candidates[subject] = Candidate(
                subject=subject, where=csv, name=name, location=location, images={sequence: image},
                expected={sequence: str(image)}, seg=seg, seg_expected=f"{csv} line {number} column seg_path", brain_mask=mask,
                age=parse_age(rec[age_col]) if age_col else "",
                sex=parse_sex(rec[sex_col], numeric={1: "M", 2: "F"}) if sex_col else "",
                split=tag, require_label=True if is_lesion else None,
            )
    return build_rows(list(candidates.values()), policy, root, exclusions)


def _split_order(tag: str):
    role, _, fold = tag.partition("/")
    return (int(fold) if fold else -1, role)

"""Manifests: one row per subject of a dataset, the single entry point of raw data into the DAG.

Columns: ``subject, image, seg, age, sex, sequence, sha256`` — ``image``/``seg`` are absolute paths
of the raw files (``seg`` empty for healthy subjects), ``sha256`` is the content checksum of the raw
image (provenance: a changed raw file is visible in the manifest).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ..errors import InputDataError

MANIFEST_COLUMNS = ["subject", "image", "seg", "age", "sex", "sequence", "sha256"]


def file_checksum(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (read-only)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def phantom_manifest(raw_dir: str | Path, sequence: str) -> pd.DataFrame:
    """Manifest of a phantom cohort written by :func:`brainuad.data.phantom.generate_cohort`.

    Parameters
    ----------
    raw_dir : path
        Folder with ``participants.tsv`` and the NIfTI files.
    sequence : str
        ``"t1"`` or ``"t2"``: which contrast this dataset uses.
    """
    raw_dir = Path(raw_dir).resolve()
    table = raw_dir / "participants.tsv"
    if not table.exists():
        raise InputDataError(table, "participants table of the phantom cohort is missing")
    part = pd.read_csv(table, sep="\t", dtype={"subject": str}, keep_default_na=False)
    if sequence not in part.columns:
        raise InputDataError(table, f"has no column {sequence!r} (sequences available: "
                                    f"{[c for c in part.columns if c in ('t1', 't2', 'flair')]})")
    rows = []
    for rec in part.to_dict("records"):
        image = raw_dir / rec[sequence]
        seg = raw_dir / rec["seg"] if rec.get("seg") else ""
        rows.append({"subject": rec["subject"], "image": str(image), "seg": str(seg),
                     "age": rec.get("age", ""), "sex": rec.get("sex", ""), "sequence": sequence,
                     "sha256": file_checksum(image)})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest TSV written by :func:`write_manifest`."""
    df = pd.read_csv(path, sep="\t", dtype={"subject": str, "seg": str, "sex": str}, keep_default_na=False)
    missing = set(MANIFEST_COLUMNS) - set(df.columns)
    if missing:
        raise InputDataError(path, f"manifest lacks columns {sorted(missing)}")
    return df


def write_manifest(df: pd.DataFrame, path: str | Path) -> None:
    """Write a manifest TSV; subjects must be unique."""
    dup = df["subject"][df["subject"].duplicated()].tolist()
    if dup:
        raise InputDataError(path, f"duplicate subject ids {dup[:5]}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.sort_values("subject").to_csv(path, sep="\t", index=False)

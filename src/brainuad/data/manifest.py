"""Manifests: one row per subject of a dataset, the single entry point of raw data into the DAG.

Columns :data:`MANIFEST_COLUMNS` (every manifest): ``subject, image, seg, age, sex, sequence,
sha256`` — ``image``/``seg`` are absolute paths of the raw files (``seg`` empty for healthy
subjects), ``sha256`` is the content checksum of the raw image (provenance: a changed raw file is
visible in the manifest). The manifest of a real data set (rows of :func:`brainuad.data.sources.scan`,
turned into a table by :func:`manifest_frame`) has the columns :data:`SOURCE_COLUMNS`:

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
seg_sha256           SHA-256 of the raw label file, ``""`` without a label
brain_mask           absolute path of a brain mask shipped with the data, else ``""``
registered           True: already in template space, skip registration
skull_stripped       True: already skull-stripped, skip skull stripping
seg_lesion_values    label values that are lesion, e.g. ``"1"``; ``""`` = every value > 0
seg_ignore_values    label values to drop from evaluation, e.g. ``"2"``; ``""`` = none
split                author split membership (``author_split`` only, else ``""``)
==================== ==========================================================================

The raw label keeps its values; ``seg_lesion_values`` / ``seg_ignore_values`` say how to read it
(:func:`brainuad.data.labels.label_arrays`). ``split`` holds comma-separated tags: ``test``,
``val`` (pathology sets), ``train/<k>`` and ``val/<k>`` (healthy cross-validation fold k);
:func:`brainuad.data.splits.splits_from_manifest` turns them into the splits of
:mod:`brainuad.data.splits`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ..errors import InputDataError

#: Columns of every manifest.
MANIFEST_COLUMNS = ["subject", "image", "seg", "age", "sex", "sequence", "sha256"]
#: columns of ``exclusions.tsv``, the manifest job's table of subjects a source scan left out
EXCLUSION_KEYS = ("source", "subject", "file", "reason")
#: Columns of a real data set's manifest: the manifest columns, then the source columns.
SOURCE_COLUMNS = [*MANIFEST_COLUMNS, "seg_sha256", "brain_mask", "registered", "skull_stripped",
                  "seg_lesion_values", "seg_ignore_values", "split"]


def file_checksum(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (read-only)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of a data source -> DataFrame with the columns :data:`SOURCE_COLUMNS` in order (no rows allowed)."""
    return pd.DataFrame(rows, columns=SOURCE_COLUMNS)


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


def subject_files(row: dict) -> dict[str, str]:
    """Raw files of one manifest row: ``image``, plus ``seg`` and ``brain_mask`` where the row has them."""
    files = {"image": row["image"]}
    if row["seg"]:
        files["seg"] = row["seg"]
    if row.get("brain_mask"):
        files["brain_mask"] = row["brain_mask"]
    return files


def subject_flags(row: dict) -> dict:
    """Manifest flags of one subject handed to pre-processing (phantom manifests have none: defaults)."""
    return {
        "registered": str(row.get("registered", "")).lower() == "true",
        "skull_stripped": str(row.get("skull_stripped", "")).lower() == "true",
        "lesion_values": str(row.get("seg_lesion_values", "")),
        "ignore_values": str(row.get("seg_ignore_values", "")),
    }

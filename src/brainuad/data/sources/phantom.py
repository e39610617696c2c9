"""The built-in phantom cohort (:mod:`brainuad.data.phantom`), as the workflow generates it.

Layout: the folder written by :func:`brainuad.data.phantom.generate_cohort`: ``participants.tsv``
(``subject, cohort, age, sex``, one column per contrast naming its file, ``seg`` naming the label
or empty for healthy subjects) and the NIfTI files next to it. The rows have the manifest columns
only (:data:`brainuad.data.manifest.MANIFEST_COLUMNS`), the files are not validated (the generator
wrote them) and nothing is excluded. A phantom source's config ``options`` are generator settings
(fields of :class:`brainuad.data.phantom.PhantomConfig`), not scan options.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from brainuad.data.manifest import file_checksum
from brainuad.data.sources.registry import register_source
from brainuad.errors import InputDataError


def _generator_options() -> list[str]:
    from brainuad.data.phantom import PhantomConfig  # the generator is imported only when asked

    return [f.name for f in dataclasses.fields(PhantomConfig)]


@register_source("phantom", options=_generator_options)
def scan_phantom(root: str | Path, *, sequence: str = "t1") -> tuple[list[dict], list[dict]]:
    """Manifest rows of a phantom cohort folder.

    Parameters
    ----------
    root : path
        Folder with ``participants.tsv`` and the NIfTI files.
    sequence : str
        ``"t1"``, ``"t2"`` or ``"flair"``: which contrast this dataset uses.

    Returns
    -------
    rows : list of dict
        One per subject in table order, keys ``subject, image, seg, age, sex, sequence, sha256``
        (absolute paths below the resolved ``root``).
    exclusions : list
        Always empty.

    Raises
    ------
    InputDataError
        ``participants.tsv`` is missing or has no column ``sequence``.
    """
    root = Path(root).resolve()
    table = root / "participants.tsv"
    if not table.exists():
        raise InputDataError(table, "participants table of the phantom cohort is missing")
    part = pd.read_csv(table, sep="\t", dtype={"subject": str}, keep_default_na=False)
    if sequence not in part.columns:
        raise InputDataError(table, f"has no column {sequence!r} (sequences available: "
                                    f"{[c for c in part.columns if c in ('t1', 't2', 'flair')]})")
    rows = []
    for rec in part.to_dict("records"):
        image = root / rec[sequence]
        seg = root / rec["seg"] if rec.get("seg") else ""
        rows.append({"subject": rec["subject"], "image": str(image), "seg": str(seg),
                     "age": rec.get("age", ""), "sex": rec.get("sex", ""), "sequence": sequence,
                     "sha256": file_checksum(image)})
    return rows, []

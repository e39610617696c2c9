"""One ``preprocess`` job of the workflow: pre-process a subject, or exclude it when its input is unusable."""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from brainuad.data.manifest import read_manifest, subject_files, subject_flags
from brainuad.data.preprocess import preprocess_subject
from brainuad.data.preprocess.options import PreprocessOptions
from brainuad.errors import InputDataError
from brainuad.utils import write_json

__all__ = ["OUTPUT_NAMES", "preprocess_dataset", "preprocess_or_exclude"]

#: NIfTI outputs of a job (``{subject}_{name}.nii.gz``); the ``qc`` output is the JSON record.
OUTPUT_NAMES = ("image", "mask", "seg", "ignore")


def preprocess_or_exclude(
    image_path: str | Path,
    outputs: Mapping[str, str | Path],
    options: PreprocessOptions,
    *,
    dataset: str,
    subject_id: str,
    source: str,
    strict: bool,
    seg_path: str | Path | None = None,
    brain_mask_path: str | Path | None = None,
    tmpdir: str | Path | None = None,
    threads: int = 1,
    log: logging.Logger,
    **subject_flags,
) -> dict:
    """Run :func:`preprocess_subject` and write its QC record, or the exclusion marker.

    ANTs' work folder is a temporary folder (prefix ``brainuad-ants-``) inside ``tmpdir``. An
    :class:`InputDataError` stops the job when ``strict`` (logged and printed to the real stderr);
    otherwise the subject is excluded: the NIfTI outputs become empty placeholder files (never
    read) and the record is ``{"excluded": True, "stage": "preprocess", "source", "file",
    "reason"}``. Either record gets ``subject`` and ``raw_image`` and is written to
    ``outputs["qc"]``.

    Parameters
    ----------
    image_path : str or Path
        Raw image.
    outputs : mapping
        Files ``image``, ``mask``, ``seg``, ``ignore`` (NIfTI) and ``qc`` (JSON).
    options : PreprocessOptions
    dataset, subject_id, source : str
        Named in messages and records.
    strict : bool
        Stop on unusable input instead of excluding the subject.
    seg_path, brain_mask_path, threads
        As in :func:`preprocess_subject`.
    tmpdir : str or Path, optional
        Parent of the temporary work folder.
    log : logging.Logger
    **subject_flags
        The manifest's flags: ``registered``, ``skull_stripped``, ``lesion_values``,
        ``ignore_values``.

    Returns
    -------
    dict
        The record written.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="brainuad-ants-", dir=tmpdir) as work:
            qc = preprocess_subject(image_path, outputs["image"], outputs["mask"], outputs["seg"], options=options,
                                    seg_path=seg_path, out_ignore=outputs["ignore"], brain_mask_path=brain_mask_path,
                                    tmpdir=work, threads=threads, **subject_flags)
    except InputDataError as error:
        message = f"dataset {dataset}, subject {subject_id}: {error}"
        if strict:
            log.error(message)
            print(f"InputDataError: {message}", file=sys.__stderr__, flush=True)
            raise
        log.warning("excluded %s", message)
        for name in OUTPUT_NAMES:
            Path(outputs[name]).write_bytes(b"")
        qc = {"excluded": True, "stage": "preprocess", "source": source, "file": error.path, "reason": str(error)}
    qc["subject"] = subject_id
    qc["raw_image"] = str(image_path)
    write_json(qc, outputs["qc"])
    log.info("qc %s", qc)
    return qc


def preprocess_dataset(
    manifest_path: str | Path,
    outputs: Mapping[str, Mapping[str, str | Path]],
    options: PreprocessOptions,
    *,
    dataset: str,
    source: str,
    strict: bool,
    tmpdir: str | Path | None = None,
    threads: int = 1,
    log: logging.Logger,
) -> list[dict]:
    """Several subjects of one dataset in one job (config ``jobs.preprocess: per_dataset``).

    Each subject is pre-processed exactly as its own ``preprocess`` job would do it
    (:func:`preprocess_or_exclude` with the raw files and flags of its manifest row), in the order given.

    Parameters
    ----------
    manifest_path : str or Path
        The dataset's manifest (``results/data/<dataset>/manifest.tsv``).
    outputs : mapping
        ``subject -> {"image", "mask", "seg", "ignore", "qc": path}``.
    options : PreprocessOptions
    dataset, source : str
        Named in messages and records.
    strict, tmpdir, threads, log
        As in :func:`preprocess_or_exclude`.

    Returns
    -------
    list of dict
        The QC records written, in the order of ``outputs``.

    Raises
    ------
    InputDataError
        Naming the manifest, when a subject of ``outputs`` is not in it (a phantom cohort generated with
        other settings than the config's).
    """
    rows = {str(row["subject"]): row for row in read_manifest(manifest_path).to_dict("records")}
    missing = [subject for subject in outputs if subject not in rows]
    if missing:
        raise InputDataError(manifest_path, f"dataset {dataset}: subjects {missing[:5]} planned from the config "
                                            f"({len(missing)} in all) are not in the manifest")
    records = []
    for subject, files in outputs.items():
        row = rows[subject]
        raw = subject_files(row)
        records.append(preprocess_or_exclude(raw["image"], files, options, dataset=dataset, subject_id=subject,
                                             source=source, strict=strict, seg_path=raw.get("seg"),
                                             brain_mask_path=raw.get("brain_mask"), tmpdir=tmpdir, threads=threads,
                                             log=log, **subject_flags(row)))
    return records

"""One ``preprocess`` job of the workflow: pre-process a subject, or exclude it when its input is unusable."""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from brainuad.data.preprocess import preprocess_subject
from brainuad.data.preprocess.options import PreprocessOptions
from brainuad.errors import InputDataError
from brainuad.utils import write_json

__all__ = ["OUTPUT_NAMES", "preprocess_or_exclude"]

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

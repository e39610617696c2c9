"""Anomaly maps and segmentations of the test subjects as NIfTI files for image viewers.

Per test subject of one evaluation (model, fold, dataset, scoring), four files in one folder:

* ``{subject}_map.nii.gz`` -- the post-processed anomaly map (median filter and eroded brain mask, in the
  order of config ``conventions``; ignored voxels 0), float32, on the pre-processed grid (the affine of the
  dataset's pack, i.e. of ``results/data/<dataset>/nifti/<subject>_image.nii.gz``);
* ``{subject}_seg.nii.gz`` -- the map binarised at the evaluation's threshold (``threshold.json``, the
  threshold searched on the validation set) with the small-component rule of the evaluation, uint8;
* ``{subject}_map_raw.nii.gz`` / ``{subject}_seg_raw.nii.gz`` -- the same on the subject's raw scan grid,
  through the inverse of the stored registration (:func:`brainuad.data.preprocess.raw_space.to_raw_space`:
  linear interpolation for the map, label interpolation for the segmentation);

plus ``index.tsv`` (one row per subject: raw scan, threshold, predicted voxels on both grids). Load a
``*_raw`` file over the raw scan (ITK-SNAP: File > Open, then Segmentation > Open / Image > Add overlay;
FSLeyes: ``fsleyes scan.nii.gz subject_map_raw.nii.gz -cm hot``), the others over
``results/data/<dataset>/nifti/<subject>_image.nii.gz``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from ..conventions import DEFAULT_PRESET, PRESETS
from ..data.pack import dhw_to_ras, load_pack, subject_index
from ..errors import InputDataError
from ..utils import read_json, write_tsv
from .postprocess import binarize
from .protocol import drop_ignored, postprocess_all

__all__ = ["export_viewer_maps"]


def _save(array: np.ndarray, affine: np.ndarray, path: Path, dtype) -> None:
    image = nib.Nifti1Image(np.asarray(array).astype(dtype), affine)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))


def export_viewer_maps(out_dir: str | Path, *, scores: str | Path, volumes: str | Path, threshold: str | Path,
                       qc_records: Mapping[str, str | Path], raw_images: Mapping[str, str | Path],
                       options: Mapping, conventions: Mapping | None = None, split: str = "test",
                       raw_space: bool = True) -> list[dict]:
    """Write the viewer files (module docstring) of every ``split`` subject of one evaluation.

    Parameters
    ----------
    out_dir : path
        Output folder (created).
    scores : path
        Scoring output: ``maps`` (N, D, H, W), ``subjects``, ``split``.
    volumes : path
        The dataset's pack (brain masks, ignored voxels, ``affine`` of the pre-processed grid).
    threshold : path
        The evaluation's ``threshold.json`` (its ``threshold``).
    qc_records : mapping subject -> path
        Pre-processing QC records (``registration_transform``); only the exported subjects are read.
    raw_images : mapping subject -> path
        The subjects' raw scans (the manifest's ``image``).
    options : mapping
        The ``evaluation`` config section (``median``, ``erode``, ``erode_mode``, ``min_component``).
    conventions : mapping, optional
        ``postprocess_order`` and ``component_rule`` (:mod:`brainuad.conventions`; thesis_text defaults).
    split : str
        Which subjects to export (``"test"``; ``"all"`` exports every subject).
    raw_space : bool
        Also write the ``*_raw`` files.

    Returns
    -------
    list of dict
        The rows of ``index.tsv``.

    Raises
    ------
    InputDataError
        ``threshold.json`` without a finite threshold (a healthy dataset), a subject without raw scan or
        QC record, a QC record without the stored registration.
    """
    out_dir = Path(out_dir)
    summary = read_json(threshold)
    thr = float(summary.get("threshold", float("nan")))
    if not np.isfinite(thr):
        raise InputDataError(threshold, "no finite 'threshold' (viewer maps need a pathology dataset's evaluation)")
    with np.load(scores) as z:
        maps, subjects, splits = z["maps"], z["subjects"].tolist(), z["split"].tolist()
    keep = [i for i, s in enumerate(splits) if split == "all" or s == split]
    subjects = [subjects[i] for i in keep]
    pack = load_pack(volumes)
    idx = subject_index(pack, subjects)
    masks = pack["masks"][idx]
    ignores = pack["ignore"][idx] if "ignore" in pack else None
    conv = {**PRESETS[DEFAULT_PRESET], **(conventions or {})}
    pp = postprocess_all([maps[i] for i in keep], masks, median=options["median"], erode=options["erode"],
                         erode_mode=options.get("erode_mode", "2d"), order=conv["postprocess_order"])
    pp, _, _ = drop_ignored(pp, masks, None, ignores)
    affine = np.asarray(pack["affine"], dtype=np.float64)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for subject, amap in zip(subjects, pp):
        seg = binarize(amap, thr, min_component=options["min_component"], component_rule=conv["component_rule"])
        files = {"map": out_dir / f"{subject}_map.nii.gz", "seg": out_dir / f"{subject}_seg.nii.gz"}
        _save(dhw_to_ras(amap), affine, files["map"], np.float32)
        _save(dhw_to_ras(seg), affine, files["seg"], np.uint8)
        row = {"subject": subject, "threshold": thr, "predicted_voxels": int(seg.sum()),
               "map": files["map"].name, "seg": files["seg"].name}
        if raw_space:
            if subject not in raw_images or subject not in qc_records:
                raise InputDataError(scores, f"subject {subject} has no raw scan or QC record to map back to")
            qc_path = Path(qc_records[subject])
            record = read_json(qc_path)
            from ..data.preprocess.raw_space import to_raw_space  # ANTsPy: only when raw-space files are asked for

            transforms = record.get("registration_transform")
            raw_map = to_raw_space(nib.load(str(files["map"])), raw_images[subject], transforms,
                                   interpolation="linear", qc_path=qc_path)
            raw_seg = to_raw_space(nib.load(str(files["seg"])), raw_images[subject], transforms,
                                   interpolation="label", qc_path=qc_path)
            _save(raw_map.get_fdata(), raw_map.affine, out_dir / f"{subject}_map_raw.nii.gz", np.float32)
            seg_raw = np.rint(raw_seg.get_fdata())
            _save(seg_raw, raw_seg.affine, out_dir / f"{subject}_seg_raw.nii.gz", np.uint8)
            row.update(raw_image=str(raw_images[subject]), predicted_voxels_raw=int((seg_raw > 0).sum()),
                       map_raw=f"{subject}_map_raw.nii.gz", seg_raw=f"{subject}_seg_raw.nii.gz")
        rows.append(row)
    write_tsv(rows, out_dir / "index.tsv")
    return rows

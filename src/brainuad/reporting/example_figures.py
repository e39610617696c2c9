"""Figures of single example subjects from the stored results: the qualitative figure of a table
(Figure 4.3 analogue) and the multi-sample scores of one subject (Figure 4.5 analogue)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.domain_shift import histogram_shift
from ..conventions import DEFAULT_PRESET, PRESETS
from ..data.pack import load_pack, subject_index
from ..evaluation.postprocess import binarize, postprocess
from .. import paths
from ..paths import trainset_of
from ..utils import read_json
from .figures import mhd_figure, pick_example, pixel_correlation, qualitative_figure
from .tables import table_row


def final_map(amap: np.ndarray, mask: np.ndarray, threshold: float, options: dict,
              conventions: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Post-processed map and its binarisation, as the evaluation computes them.

    Parameters
    ----------
    amap, mask : ndarray, (D, H, W)
    threshold : float
    options : the ``evaluation`` config section (``median``, ``erode``, ``erode_mode``, ``min_component``)
    conventions : dict, optional
        ``postprocess_order`` and ``component_rule`` of config ``conventions``; missing ones take the
        thesis_text values (:mod:`brainuad.conventions`).

    Returns
    -------
    (map, binary) : (D, H, W) float32 and bool
    """
    conv = {**PRESETS[DEFAULT_PRESET], **(conventions or {})}
    pp = postprocess(amap.astype(np.float32), mask, median=options["median"], erode=options["erode"],
                     erode_mode=options.get("erode_mode", "2d"), order=conv["postprocess_order"])
    return pp, binarize(pp, threshold, min_component=options["min_component"], component_rule=conv["component_rule"])


def split_positions(split, part: str = "test") -> list[int]:
    """Positions of the subjects of ``part`` ("val" / "test") in a stored split list."""
    return [i for i, s in enumerate(split) if s == part]


def qualitative_panels(table: dict, fold: int, *, options: dict, models: dict, datasets: dict, run: str,
                       histogram_bins: int = 500, conventions: dict | None = None) -> list[dict]:
    """One panel per (pathology dataset, table row) for :func:`brainuad.reporting.figures.qualitative_figure`.

    Per dataset the test subject with the largest lesion (of the first row's scores) at its largest lesion
    slice, the same subject and slice for every row. Reads ``results/data``, ``results/scores``,
    ``results/eval`` and, where it exists, ``results/recon`` (the mean reconstruction and the histograms
    of input vs reconstruction on the healthy brain voxels).

    Parameters
    ----------
    table : dict, the table spec (``datasets``, ``rows``)
    fold : int
    options : the ``evaluation`` config section
    models, datasets : the config sections
    run : the default run id
    histogram_bins : bins of :func:`brainuad.analysis.domain_shift.histogram_shift`
    conventions : post-processing order and component rule (:func:`final_map`)
    """
    panels = []
    for ds in table["datasets"]:
        trainset = trainset_of(ds, datasets)
        pack = load_pack(paths.fill(paths.VOLUMES, dataset=ds))
        example = None
        for row in table["rows"]:
            row = table_row(row, run)
            model, scoring = row["model"], row["scoring"]
            where = dict(trainset=trainset, model=model, run=row["run"], fold=fold, dataset=ds, scoring=scoring)
            with np.load(paths.fill(paths.SCORES, **where)) as z:
                maps, subjects, split = z["maps"], z["subjects"].tolist(), z["split"]
            if example is None:  # same subject and slice for every model of this dataset
                test = split_positions(split)
                v, sl = pick_example(pack["segs"][subject_index(pack, [subjects[i] for i in test])])
                example = (subjects[test[v]], sl)
            subject, sl = example
            k, j = subjects.index(subject), subject_index(pack, [subject])[0]
            image, mask, seg = pack["images"][j].astype(np.float32), pack["masks"][j], pack["segs"][j]
            summary = read_json(paths.fill(paths.THRESHOLD, **where))
            if summary.get("not_configured"):  # a scoring without its weights: no panel (the tables say why)
                continue
            thr = summary["threshold"]
            amap, binary = final_map(maps[k], mask, thr, options, conventions)
            rec_file = Path(paths.fill(paths.RECON, **where))
            recon, hist = _mean_recon(rec_file, k, image, mask, seg, sl, histogram_bins)
            label = row.get("label") or models[model].get("label", model)
            panels.append({"title": f"{datasets[ds].get('label', ds)}\n{label} · {subject} z={sl}",
                           "image": image[sl], "seg": seg[sl], "mask": mask[sl], "map": amap[sl], "recon": recon,
                           "binary": binary[sl], "hist": hist, "prediction": _model_map(rec_file, k, sl)})
    return panels


def _model_map(rec_file: Path, k: int, sl: int):
    """Slice ``sl`` of the model's own map of subject k where the reconstruct output stores it beside
    reconstructions (a SADM Stage II model: the Unet prediction), else None."""
    if not rec_file.exists():
        return None
    with np.load(rec_file) as z:
        if "maps" not in z.files or "recons" not in z.files:
            return None
        return z["maps"][k, sl].astype(np.float32)


def _mean_recon(rec_file: Path, k: int, image, mask, seg, sl: int, bins: int):
    """(slice of the mean stored reconstruction of subject k, healthy-voxel histograms) or Nones."""
    if not rec_file.exists():
        return None, None
    with np.load(rec_file) as z:
        if "recons" not in z.files:
            return None, None
        volume = z["recons"][:, k].astype(np.float32).mean(0)  # mean over stored samples
    healthy = (mask > 0) & (seg == 0)
    hist = histogram_shift(image, volume, healthy, bins=bins) if healthy.any() else None
    return volume[sl], hist


def write_qualitative_figure(path: str | Path, table: dict, fold: int, **panels) -> int:
    """Write the qualitative figure of one table; returns the number of panels.

    ``**panels``: the keywords of :func:`qualitative_panels`.
    """
    rows = qualitative_panels(table, fold, **panels)
    qualitative_figure(rows, path)
    return len(rows)


def write_mhd_figure(path: str | Path, spec: dict, options: dict, *, recon: str | Path, volumes: str | Path,
                     threshold: str | Path, maps: dict[str, str | Path],
                     conventions: dict | None = None) -> tuple[str, int, tuple[int, int]]:
    """Write the Figure 4.5 analogue of one subject.

    The test subject with the largest lesion at its largest lesion slice: input, mean reconstruction,
    S_mean, S_MHD_diag, S_MHD_full, the post-processed and thresholded S_MHD_full map and the correlation of
    the lesion's centre pixel (the brain's centre without lesion) with every brain pixel.

    Parameters
    ----------
    path : output image
    spec : the ``report.mhd_figure`` config entry (``model``, ``dataset``)
    options : the ``evaluation`` config section
    recon : reconstruct output with ``recons`` (S, N, D, H, W), S >= 2
    volumes : the dataset's pack
    threshold : threshold.json of the ``full`` scoring
    maps : scoring outputs under the keys ``mean``, ``diag``, ``full``
    conventions : post-processing order and component rule (:func:`final_map`)

    Returns
    -------
    (subject, slice, pixel)
    """
    with np.load(recon) as z:
        recons, subjects, split = z["recons"].astype(np.float32), z["subjects"].tolist(), z["split"].tolist()
    if recons.shape[0] < 2:
        raise ValueError(f"{recon}: the MHD figure needs several reconstructions per volume "
                         f"(models.{spec['model']}.reconstruct.samples > 1)")
    pack = load_pack(volumes)
    test = split_positions(split)
    idx = subject_index(pack, [subjects[i] for i in test])
    v, sl = pick_example(pack["segs"][idx])
    k, j = test[v], idx[v]
    image, mask, seg = pack["images"][j].astype(np.float32), pack["masks"][j], pack["segs"][j]
    scores = {}
    for key in ("mean", "diag", "full"):
        with np.load(maps[key]) as z:
            scores[key] = z["maps"][k].astype(np.float32)
    final, binary = final_map(scores["full"], mask, read_json(threshold)["threshold"], options, conventions)
    lesion = np.argwhere(seg[sl] > 0)
    centre = lesion if len(lesion) else np.argwhere(mask[sl] > 0)
    pixel = tuple(int(c) for c in centre.mean(0).round())
    panels = {
        "input": image[sl], "mean reconstruction": recons[:, k, sl].mean(0), "S_mean": scores["mean"][sl],
        "S_MHD_diag": scores["diag"][sl], "S_MHD_full": scores["full"][sl],
        "final map": np.where(binary[sl], final[sl], 0), "correlation": pixel_correlation(recons[:, k, sl], mask[sl], pixel),
    }
    mhd_figure(panels, seg[sl], pixel, path,
               title=f"{spec['model']} · {spec['dataset']} · {subjects[k]} z={sl} · N={recons.shape[0]} reconstructions")
    return subjects[k], sl, pixel

"""The whole evaluation of one (model, fold, dataset, scoring): post-process every map, find the
thresholds, and compute one metrics row per subject.

Pathology datasets (thesis Ch3.2): the DICE threshold comes from the search on the pooled unhealthy
*validation* maps and is applied to the test maps; [DICE] (``dice_oracle``) uses the threshold that the
same search finds on the pooled *test* maps (an upper bound). AUPRC per volume on the post-processed,
non-binarised map inside the brain mask (or over the whole volume, ``auprc_region="volume"``), plus the
pooled AUPRC; the voxel AUROC beside it over the same voxels (per volume ``auroc``, pooled ``auroc_pooled``).
Lesion-wise detection (:mod:`brainuad.evaluation.lesions`) on the map binarised at the validation threshold
(after the component filter): per-subject lesion sensitivity and false-positive components, per size stratum. The post-processing order, the component rule, the AUPRC region and the threshold ties
follow config ``conventions`` (:mod:`brainuad.conventions`). Where reconstructions exist: l1 on
lesion and on healthy brain voxels and their ratio.

Healthy datasets: reconstruction quality (SSIM, PSNR, l1) on the healthy test set, and thresholds
calibrated to fixed false-positive rates on the fold's healthy validation maps.

Ignored voxels (``ignores``, e.g. WMH label 2 "other pathology" with ``other_pathology: exclude``)
are removed from every voxel-wise metric by :func:`drop_ignored`: after post-processing (the median
filter and the mask erosion still see the full brain mask) they are taken out of the brain mask and
set to 0 in the map and in the lesion label, so they are neither lesion, nor prediction (thresholds
are >= 0), nor healthy brain: they drop out of Dice, precision, recall, FPR, AUPRC, the threshold
searches, the l1 terms and the healthy-set scores. (The component-size filter sees a predicted
component without its ignored voxels. SSIM is computed on the whole volume and is not affected.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..conventions import DEFAULT_PRESET, PRESETS
from ..data.pack import load_pack, subject_index
from .lesions import lesion_detection, pooled_lesion_sensitivity
from .metrics import l1_ratio, pooled_auprc, pooled_auroc, reconstruction_metrics, roc_auc, segmentation_metrics
from .postprocess import binarize, postprocess
from .threshold import healthy_fpr_threshold, pooled_dice, search_threshold


def postprocess_all(maps, masks, *, median: int, erode: int, erode_mode: str = "2d",
                    order: str = "median_first") -> list[np.ndarray]:
    """Median filter + eroded brain mask (in ``order``) on every (D, H, W) map."""
    return [postprocess(np.asarray(m, dtype=np.float32), k, median=median, erode=erode, erode_mode=erode_mode,
                        order=order) for m, k in zip(maps, masks)]


def drop_ignored(maps, masks, segs=None, ignores=None):
    """Remove ignored voxels from post-processed maps, brain masks and lesion labels.

    Parameters
    ----------
    maps, masks : sequences of (D, H, W) arrays, one per subject
    segs : sequence of (D, H, W) arrays, optional
    ignores : sequence of (D, H, W) arrays or None
        Non-zero = ignore this voxel; None returns the inputs unchanged.

    Returns
    -------
    (maps, masks, segs) : lists; where a subject has ignored voxels, new arrays with the map 0, the
    mask False and the label 0 there.
    """
    if ignores is None:
        return maps, masks, segs
    maps, masks = list(maps), list(masks)
    segs = None if segs is None else list(segs)
    for i, ignore in enumerate(ignores):
        ign = np.asarray(ignore) != 0
        if not ign.any():
            continue
        maps[i] = np.where(ign, 0, maps[i]).astype(np.asarray(maps[i]).dtype)
        masks[i] = (np.asarray(masks[i]) != 0) & ~ign
        if segs is not None:
            segs[i] = (np.asarray(segs[i]) != 0) & ~ign
    return maps, masks, segs


def evaluate_pathology(maps, segs, masks, split, subjects, *, images=None, recons=None, median=5, erode=3,
                       erode_mode="2d", min_component=7, protocol="greedy", steps=10,
                       cc_in_search=False, ignores=None, order="median_first", component_rule="fewer_than",
                       auprc_region="brain", ties="first", lesions=None) -> tuple[dict, list[dict]]:
    """Thresholds and per-subject metrics on a pathological dataset.

    Parameters
    ----------
    maps, segs, masks : sequences of (D, H, W) arrays, one per subject
    split : sequence of "val" / "test"
    subjects : sequence of str
    images, recons : optional sequences of (D, H, W) inputs and mean reconstructions (for l1-ratio)
    median, erode, erode_mode, min_component : post-processing (thesis 5, 3, "2d", 7)
    protocol, steps, cc_in_search : threshold search (see :func:`search_threshold`)
    ignores : optional sequence of (D, H, W) arrays; non-zero voxels leave every metric (module docstring)
    order, component_rule, auprc_region, ties : the conventions (:mod:`brainuad.conventions`): post-processing
        order, small-component rule, AUPRC voxels ("brain" or "volume"), greedy-search ties ("first"/"last")
    lesions : dict, optional
        Lesion-wise detection settings ``overlap``, ``strata``, ``connectivity``
        (:func:`brainuad.evaluation.lesions.lesion_detection`); None uses its defaults.

    Returns
    -------
    (summary, rows): ``summary`` has ``threshold`` (validation), ``threshold_oracle`` (test), the
    search Dice values and ``pooled`` metrics of the test set (``auprc_pooled``, ``auroc_pooled``,
    ``dice_pooled``, ``lesion_sensitivity_pooled``); ``rows`` one dict per subject (segmentation metrics,
    ``auroc``, ``dice_oracle``, the lesion-wise counts, l1 terms).
    """
    pp = postprocess_all(maps, masks, median=median, erode=erode, erode_mode=erode_mode, order=order)
    pp, masks, segs = drop_ignored(pp, masks, segs, ignores)
    split = np.asarray(split)
    val = [i for i, s in enumerate(split) if s == "val"]
    test = [i for i, s in enumerate(split) if s == "test"]
    if not val or not test:
        raise ValueError(f"need validation and test subjects, got {len(val)} val / {len(test)} test")
    kw = {"steps": steps, "ties": ties} if protocol == "greedy" else {}
    if cc_in_search:
        kw.update(cc_in_search=True, min_component=min_component, component_rule=component_rule)
    thr, dice_val = search_threshold([pp[i] for i in val], [segs[i] for i in val], protocol, **kw)
    thr_oracle, dice_oracle_pooled = search_threshold([pp[i] for i in test], [segs[i] for i in test], protocol, **kw)
    lesions = dict(lesions or {})
    rows = []
    for i, subject in enumerate(subjects):
        row = {"subject": subject, "split": split[i]}
        conv = {"min_component": min_component, "component_rule": component_rule, "auprc_region": auprc_region}
        m = segmentation_metrics(pp[i], segs[i], masks[i], thr, **conv)
        row.update(m)
        region = np.asarray(masks[i]) != 0 if auprc_region == "brain" else slice(None)
        seg_i = np.asarray(segs[i]) != 0
        row["auroc"] = roc_auc(seg_i[region], np.asarray(pp[i])[region]) if seg_i.any() else float("nan")
        row["dice_oracle"] = segmentation_metrics(pp[i], segs[i], masks[i], thr_oracle, **conv)["dice"]
        pred = binarize(pp[i], thr, min_component=min_component, component_rule=component_rule)
        row.update(lesion_detection(pred, seg_i, **lesions))
        if images is not None and recons is not None:
            row.update(l1_ratio(images[i], recons[i], segs[i], masks[i]))
        rows.append(row)
    auprc_masks = [masks[i] for i in test] if auprc_region == "brain" else None
    summary = {
        "protocol": protocol, "threshold": float(thr), "threshold_oracle": float(thr_oracle),
        "search_dice_val": float(dice_val), "search_dice_test": float(dice_oracle_pooled),
        "pooled": {
            "auprc_pooled": float(pooled_auprc([pp[i] for i in test], [segs[i] for i in test], auprc_masks)),
            "auroc_pooled": float(pooled_auroc([pp[i] for i in test], [segs[i] for i in test], auprc_masks)),
            "lesion_sensitivity_pooled": float(pooled_lesion_sensitivity([rows[i] for i in test])),
            "dice_pooled": float(pooled_dice([pp[i] for i in test], [segs[i] for i in test], thr,
                                             min_component=min_component, component_rule=component_rule)),
        },
    }
    return summary, rows


def evaluate_healthy(maps, masks, split, subjects, *, images=None, recons=None, median=5, erode=3, erode_mode="2d",
                     fprs=(0.01, 0.05, 0.1), ignores=None, lpips=None,
                     order="median_first") -> tuple[dict, list[dict]]:
    """Healthy-FPR thresholds (from the validation maps) and reconstruction metrics of the healthy test set.

    ``lpips``: optional callable ``(image, recon, mask) -> float`` (see :mod:`brainuad.evaluation.lpips`);
    without it ``summary["lpips"]`` says "not configured" and no LPIPS value is written. ``order``: the
    post-processing order (:func:`brainuad.evaluation.postprocess.postprocess`).

    Returns
    -------
    (summary, rows): ``summary["fpr_thresholds"]`` maps each FPR to a threshold; rows hold ssim, psnr, l1
    (and lpips) when reconstructions exist, and the mean post-processed score in the brain per subject.
    """
    pp = postprocess_all(maps, masks, median=median, erode=erode, erode_mode=erode_mode, order=order)
    pp, masks, _ = drop_ignored(pp, masks, None, ignores)
    val = [i for i, s in enumerate(split) if s == "val"]
    summary = {"fpr_thresholds": {}, "threshold": float("nan")}
    if val:
        for fpr in fprs:
            summary["fpr_thresholds"][str(fpr)] = float(healthy_fpr_threshold([pp[i] for i in val],
                                                                             [masks[i] for i in val], fpr=fpr)[0])
    rows = []
    for i, subject in enumerate(subjects):
        brain = np.asarray(masks[i]) > 0
        row = {"subject": subject, "split": split[i],
               "mean_score": float(pp[i][brain].mean()) if brain.any() else float("nan")}
        if images is not None and recons is not None:
            row.update(reconstruction_metrics(images[i], recons[i], masks[i]))
            if lpips is not None:
                row["lpips"] = float(lpips(images[i], recons[i], masks[i]))
        rows.append(row)
    if lpips is None:
        summary["lpips"] = "not configured"
    return summary, rows


def evaluate_stored(role: str, options: dict, scores_path: str | Path, recon_path: str | Path,
                    volumes_path: str | Path, samples: int | None = None,
                    conventions: dict | None = None) -> tuple[dict, list[dict]]:
    """The evaluation of one stored (model, fold, dataset, scoring): :func:`evaluate_healthy` or
    :func:`evaluate_pathology` on the files the workflow wrote.

    Parameters
    ----------
    role : {"healthy", "pathology"}
        The dataset's role; anything but "healthy" is evaluated as pathology.
    options : dict
        The ``evaluation`` config section (``median``, ``erode``, ``erode_mode``, ``min_component``,
        ``threshold``, ``healthy_fpr``, ``lpips_weights``).
    scores_path : path
        Scoring output: ``maps`` (N, D, H, W), ``subjects``, ``split``.
    recon_path : path
        Reconstruct output; its ``recons`` (S, N, D, H, W), when present, give the l1 / SSIM / PSNR /
        LPIPS terms.
    volumes_path : path
        The dataset's pack (images, masks, lesion labels, ignored voxels).
    samples : int, optional
        The reconstructions the scoring used: the first ``samples`` (all when None), averaged.
    conventions : dict, optional
        The evaluation switches of config ``conventions`` the role uses (``postprocess_order``; for
        pathology also ``component_rule``, ``auprc_region``, ``threshold_ties``); a missing one takes the
        thesis_text value (:mod:`brainuad.conventions`).

    Returns
    -------
    (summary, rows) as the two evaluate functions return them; for scores marked ``not_configured``
    (:func:`brainuad.scoring.stored.score_stored`) ``({"not_configured": reason}, one row per subject
    without metrics)``.
    """
    with np.load(scores_path) as z:
        not_configured = str(z["not_configured"]) if "not_configured" in z.files else None
        backbone = {"backbone": str(z["backbone"])} if "backbone" in z.files else {}
        if not_configured:  # a scoring without its pre-trained weights: no numbers, the reason instead
            return ({"not_configured": not_configured, **backbone},
                    [{"subject": s, "split": sp} for s, sp in zip(z["subjects"].tolist(), z["split"].tolist())])
    maps, subjects, split, images, masks, segs, ignores = load_stored(scores_path, volumes_path)
    with np.load(recon_path) as z:
        recons = z["recons"][:samples].astype(np.float32).mean(0) if "recons" in z.files else None
    conv = {**PRESETS[DEFAULT_PRESET], **(conventions or {})}
    common = dict(images=images if recons is not None else None, recons=recons, median=options["median"],
                  erode=options["erode"], erode_mode=options.get("erode_mode", "2d"), ignores=ignores,
                  order=conv["postprocess_order"])
    if role == "healthy":
        lpips = None
        if recons is not None and options.get("lpips_weights"):
            from .lpips import lpips_metric  # torch: imported only when LPIPS is configured

            lpips = lpips_metric(options.get("lpips_weights"))
        summary, rows = evaluate_healthy(maps, masks, split, subjects, fprs=options.get("healthy_fpr", [0.01]),
                                         lpips=lpips, **common)
        return {**summary, **backbone}, rows
    th = options["threshold"]
    summary, rows = evaluate_pathology(maps, segs, masks, split, subjects, min_component=options["min_component"],
                                       protocol=th["protocol"], steps=th.get("steps", 10),
                                       cc_in_search=th.get("cc_in_search", False),
                                       component_rule=conv["component_rule"], auprc_region=conv["auprc_region"],
                                       ties=conv["threshold_ties"], lesions=options.get("lesions"), **common)
    return {**summary, **backbone}, rows


def load_stored(scores_path: str | Path, volumes_path: str | Path):
    """Maps of a scoring output and the matching pack volumes, in the scoring's subject order.

    Returns
    -------
    maps : ndarray, (N, D, H, W)
    subjects, split : lists of str
    images : ndarray float32, (N, D, H, W)
    masks, segs : ndarrays, (N, D, H, W)
    ignores : ndarray (N, D, H, W) or None
    """
    with np.load(scores_path) as z:
        maps, subjects, split = z["maps"], z["subjects"].tolist(), z["split"].tolist()
    pack = load_pack(volumes_path)
    idx = subject_index(pack, subjects)
    images = pack["images"][idx].astype(np.float32)
    ignores = pack["ignore"][idx] if "ignore" in pack else None
    return maps, subjects, split, images, pack["masks"][idx], pack["segs"][idx], ignores


def apply_fpr_thresholds(maps, segs, masks, split, subjects, thresholds: dict, *, median=5, erode=3,
                         erode_mode="2d", min_component=7, ignores=None, order="median_first",
                         component_rule="fewer_than") -> list[dict]:
    """Thresholds calibrated on healthy validation maps (:func:`evaluate_healthy`) applied to a pathology set.

    Every map is post-processed as in :func:`evaluate_pathology` and binarised at each threshold with the
    same rule as the DICE (``map > t``, then the component filter).

    Parameters
    ----------
    maps, segs, masks : sequences of (D, H, W) arrays, one per subject
    split, subjects : sequences of str
    thresholds : dict
        ``{target FPR (str or float): threshold}``, as ``threshold.json["fpr_thresholds"]`` of the healthy
        evaluation of the same model, fold, scoring and protocol.
    median, erode, erode_mode, min_component, ignores, order, component_rule
        As :func:`evaluate_pathology`.

    Returns
    -------
    list of dict
        One row per subject and target FPR: ``subject``, ``split``, ``target_fpr``, ``threshold``,
        ``dice``, ``sensitivity`` (voxel recall), ``fpr`` (false positives / healthy brain voxels),
        ``precision``; NaN where a subject has no lesion (dice, sensitivity, precision).
    """
    if not thresholds:
        raise ValueError("no healthy-FPR thresholds: the healthy evaluation has no validation subjects")
    pp = postprocess_all(maps, masks, median=median, erode=erode, erode_mode=erode_mode, order=order)
    pp, masks, segs = drop_ignored(pp, masks, segs, ignores)
    rows = []
    for target, thr in sorted(((float(k), float(v)) for k, v in thresholds.items())):
        for i, subject in enumerate(subjects):
            m = segmentation_metrics(pp[i], segs[i], masks[i], thr, min_component=min_component,
                                     component_rule=component_rule)
            rows.append({"subject": subject, "split": split[i], "target_fpr": target, "threshold": thr,
                         "dice": m["dice"], "sensitivity": m["recall"], "fpr": m["fpr"],
                         "precision": m["precision"]})
    return rows


def apply_fpr_stored(options: dict, scores_path: str | Path, volumes_path: str | Path,
                     healthy_threshold_path: str | Path, conventions: dict | None = None) -> list[dict]:
    """:func:`apply_fpr_thresholds` on the files the workflow wrote: the pathology scores and pack, and the
    ``threshold.json`` of the healthy evaluation (its ``fpr_thresholds``).

    Raises
    ------
    ValueError
        The healthy threshold file has no ``fpr_thresholds`` (names the file).
    """
    import json

    healthy = json.loads(Path(healthy_threshold_path).read_text())
    thresholds = healthy.get("fpr_thresholds")
    if not thresholds:
        raise ValueError(f"{healthy_threshold_path}: no fpr_thresholds (is it the evaluation of a healthy "
                         "dataset with validation subjects?)")
    maps, subjects, split, _, masks, segs, ignores = load_stored(scores_path, volumes_path)
    conv = {**PRESETS[DEFAULT_PRESET], **(conventions or {})}
    return apply_fpr_thresholds(maps, segs, masks, split, subjects, thresholds, median=options["median"],
                                erode=options["erode"], erode_mode=options.get("erode_mode", "2d"),
                                min_component=options["min_component"], ignores=ignores,
                                order=conv["postprocess_order"], component_rule=conv["component_rule"])


def evaluate_stored_jobs(jobs: list[dict], log=None) -> None:
    """Run one or more stored evaluations and write their files.

    One process runs them all (config ``jobs.evaluate: per_model``: every evaluation and healthy-FPR evaluation
    of one model), so the interpreter and the evaluation code are loaded once; every job gets exactly what a job
    of its own computes (:func:`evaluate_stored`, :func:`apply_fpr_stored` on the same files), written the same
    way. The evaluations run first, in the given order, then the healthy-FPR evaluations, which may read a
    ``threshold.json`` written by an evaluation of the same call.

    Parameters
    ----------
    jobs : list of dict
        ``"kind": "evaluate"`` -- the ``evaluate`` rule's params ``role``, ``options``, ``samples``,
        ``conventions``, its inputs ``scores``, ``recon``, ``volumes`` and outputs ``threshold`` (JSON summary)
        and ``metrics`` (TSV, one row per subject); ``"kind": "fpr"`` -- the ``evaluate_fpr`` rule's params
        ``options``, ``conventions``, inputs ``scores``, ``volumes``, ``healthy`` (the healthy evaluation's
        threshold.json) and ``output`` (TSV, one row per subject and target FPR).
    log : logging.Logger, optional

    Raises
    ------
    ValueError
        A job of another kind (names it).
    """
    from ..utils import write_json, write_tsv  # numpy/scipy only: no pandas, sklearn or torch in these jobs

    bad = [job.get("kind") for job in jobs if job.get("kind") not in ("evaluate", "fpr")]
    if bad:
        raise ValueError(f"evaluation job kind {bad[0]!r}: expected 'evaluate' or 'fpr'")
    for job in [j for j in jobs if j["kind"] == "evaluate"] + [j for j in jobs if j["kind"] == "fpr"]:
        if job["kind"] == "evaluate":
            summary, rows = evaluate_stored(job["role"], job["options"], job["scores"], job["recon"], job["volumes"],
                                            samples=job["samples"], conventions=job["conventions"])
            write_json(summary, job["threshold"])
            write_tsv(rows, job["metrics"])
            if log:
                log.info("%s: summary %s", job["metrics"], summary)
        else:
            rows = apply_fpr_stored(job["options"], job["scores"], job["volumes"], job["healthy"],
                                    conventions=job["conventions"])
            write_tsv(rows, job["output"])
            if log:
                log.info("%s: %d rows (subject x target FPR)", job["output"], len(rows))

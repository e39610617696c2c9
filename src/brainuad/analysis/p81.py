"""P8.1's extra analyses (Bengs, Behrendt et al. 2021; method-spec §2.5, §6): slice-wise detection and lesion size.

* **Slice-wise detection** (P8.1-Fig6): every axial slice of every test volume is a sample; a slice is
  abnormal if it holds any annotated lesion voxel; its score is the l1 distance between the input slice
  and its reconstruction (mean absolute difference over the slice's voxels, inside the brain mask when
  one is given); AUPRC (scikit-learn's average precision) over the slices of *all* given volumes, P8.1
  pooling both pathology test sets.
* **Lesion-size analysis** (P8.1-Fig4): subject-wise Dice against the lesion size (number of annotated
  voxels), with a least-squares polynomial of degree 3 (numpy ``polyfit``) as the trend line; a series with
  fewer than 4 test subjects is drawn as points only, and the figure says so.
* **Healthy vs lesion l1** (Figure 4.1): bars of the mean l1 error on healthy and on lesion voxels per model
  and pathology set (the evaluate job's ``l1_healthy`` / ``l1_lesion`` of every test subject).

Torch-free (numpy, scikit-learn, matplotlib) so report rules can use it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score


def slice_scores(images: Sequence[np.ndarray], recons: Sequence[np.ndarray], segs: Sequence[np.ndarray],
                 masks: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Labels and l1 scores of every axial slice.

    Parameters
    ----------
    images, recons, segs : sequences of ndarray (D, H, W), one per volume
    masks : sequence of ndarray (D, H, W), optional
        Brain masks; the slice l1 is then the mean over the slice's brain voxels (0 where it has none).

    Returns
    -------
    labels : ndarray (sum of D,) bool — True where the slice holds a lesion voxel
    scores : ndarray (sum of D,) float — mean |image - recon| of the slice
    """
    labels, scores = [], []
    for i, (img, rec, seg) in enumerate(zip(images, recons, segs, strict=True)):
        img, rec, seg = (np.asarray(a, dtype=np.float64) for a in (img, rec, seg))
        if not img.shape == rec.shape == seg.shape or img.ndim != 3:
            raise ValueError(f"volume {i}: image, recon and seg must be (D, H, W) of one shape, got "
                             f"{img.shape}, {rec.shape}, {seg.shape}")
        res = np.abs(img - rec).reshape(img.shape[0], -1)
        if masks is None:
            s = res.mean(1)
        else:
            m = np.asarray(masks[i]).reshape(img.shape[0], -1) > 0
            s = np.where(m.any(1), (res * m).sum(1) / np.maximum(m.sum(1), 1), 0.0)
        labels.append((seg.reshape(img.shape[0], -1) > 0).any(1))
        scores.append(s)
    return np.concatenate(labels), np.concatenate(scores)


def slice_auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUPRC of slice-wise detection (NaN when no slice or every slice is abnormal / normal)."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(average_precision_score(labels, np.asarray(scores, dtype=float)))


def lesion_size_fit(sizes, dice, degree: int = 3) -> np.ndarray:
    """Least-squares polynomial of ``dice`` against ``sizes`` (P8.1-Fig4 trend line).

    Parameters
    ----------
    sizes, dice : array-like (n,)
        Lesion voxels and subject-wise Dice; non-finite pairs are dropped.
    degree : int
        3 in P8.1.

    Returns
    -------
    ndarray (degree + 1,) — coefficients, highest power first (``numpy.polyval`` order).
    """
    x, y = np.asarray(sizes, dtype=float), np.asarray(dice, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() <= degree:
        raise ValueError(f"a degree-{degree} fit needs more than {degree} finite points, got {int(ok.sum())}")
    return np.polyfit(x[ok], y[ok], degree)


def lesion_size_figure(groups: dict, path, title: str = "Subject-wise Dice against lesion size") -> None:
    """Scatter of Dice vs lesion size per group with its degree-3 fit (P8.1-Fig4 analogue).

    Parameters
    ----------
    groups : dict label -> (sizes, dice)
    path : output image file
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    unfitted = []
    for label, (sizes, dice) in groups.items():
        sizes, dice = np.asarray(sizes, dtype=float), np.asarray(dice, dtype=float)
        ok = np.isfinite(sizes) & np.isfinite(dice)
        fitted = ok.sum() > 3
        if not fitted:
            unfitted.append(int(ok.sum()))
        points = ax.scatter(sizes, dice, s=12, alpha=0.6,
                            label=label if fitted else f"{label} (n = {int(ok.sum())}: no fit)")
        if fitted:
            xs = np.linspace(sizes[ok].min(), sizes[ok].max(), 100)
            ax.plot(xs, np.polyval(lesion_size_fit(sizes, dice), xs), color=points.get_facecolor()[0])
    ax.set_xlabel("lesion size (voxels)")
    ax.set_ylabel("Dice")
    ax.set_title(title)
    if unfitted:  # say so on the figure: a cubic needs at least 4 subjects
        ax.text(0.0, -0.2, f"{len(unfitted)} of {len(groups)} series have {max(unfitted)} or fewer test subjects: "
                "too few for the degree-3 fit (needs 4), points only", transform=ax.transAxes, fontsize=7,
                va="top", color="0.3")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def slicewise_figure(auprc: dict, path, title: str = "Slice-wise detection") -> None:
    """Bars of the slice-wise AUPRC per model (label -> value in [0, 1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(auprc)
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(labels) + 2), 3.5))
    ax.bar(range(len(labels)), [100 * auprc[k] for k in labels], color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("slice-wise AUPRC (%)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def l1_bars(values: dict, path, title: str = "Mean l1 error on healthy and lesion voxels") -> None:
    """Figure 4.1 analogue: per model, bars of the mean l1 error on healthy and on lesion voxels.

    Parameters
    ----------
    values : dict
        ``{row label: {dataset label: (healthy (n,), lesion (n,))}}``: per-subject mean l1 errors (the
        evaluate job's ``l1_healthy`` / ``l1_lesion``); a bar is the mean over subjects, its whisker the std.
    path : output image file
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(values)
    datasets = list(dict.fromkeys(d for per in values.values() for d in per))
    bars = [(d, region) for d in datasets for region in ("healthy", "lesion")]
    width = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(rows) * len(datasets) + 2), 3.8))
    colours = plt.get_cmap("tab20").colors
    for k, (d, region) in enumerate(bars):
        means, stds = [], []
        for row in rows:
            v = np.asarray(values[row].get(d, ((), ()))[region == "lesion"], dtype=float) * 1000
            v = v[np.isfinite(v)]
            means.append(v.mean() if v.size else np.nan)
            stds.append(v.std() if v.size > 1 else 0.0)
        ax.bar(np.arange(len(rows)) - 0.4 + width * (k + 0.5), means, width, yerr=stds, capsize=2,
               color=colours[(2 * datasets.index(d) + (region == "healthy")) % len(colours)],
               label=f"{region}" + (f" · {d}" if len(datasets) > 1 else ""))
    ax.set_xticks(range(len(rows)), rows, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean l1 error (e-3)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_p81_analysis(entries: list[dict], *, table, slicewise_png, size_png, l1_png=None) -> None:
    """Slice-wise detection and lesion-size analysis of the rows of a table (one fold).

    Parameters
    ----------
    entries : list of dict
        One per (row, dataset): ``label`` (row), ``dataset`` (label), ``recon`` (a reconstruct job's npz),
        ``volumes`` (the dataset's packed volumes), ``metrics`` (the evaluate job's metrics.tsv).
        Only the test subjects are used; the first reconstruction of each volume.
    table : path
        TSV with one line per row: ``row``, ``slice_auprc``, ``abnormal_slices``, ``slices``
        (pooled over the row's datasets, as P8.1 pools BraTS and ATLAS), ``l1_healthy`` and ``l1_lesion``
        (mean over the test subjects of all the row's datasets).
    slicewise_png, size_png : paths
        :func:`slicewise_figure` and :func:`lesion_size_figure` (one series per row and dataset).
    l1_png : path, optional
        :func:`l1_bars` (Figure 4.1 analogue), one bar pair per row and dataset.
    """
    import pandas as pd

    from ..data.pack import load_pack, subject_index

    pooled: dict[str, list] = {}
    sizes: dict[str, tuple] = {}
    l1: dict[str, dict] = defaultdict(dict)  # row -> dataset -> (l1_healthy, l1_lesion) per test subject
    packs: dict[str, dict] = {}
    for e in entries:
        with np.load(e["recon"], allow_pickle=False) as z:
            recons, subjects, split = z["recons"][0], z["subjects"].tolist(), z["split"].tolist()
        test = [i for i, s in enumerate(split) if s == "test"]
        pack = packs.setdefault(str(e["volumes"]), load_pack(e["volumes"]))
        idx = subject_index(pack, [subjects[i] for i in test])
        labels, scores = slice_scores(pack["images"][idx], recons[test], pack["segs"][idx], pack["masks"][idx])
        acc = pooled.setdefault(e["label"], [[], []])
        acc[0].append(labels)
        acc[1].append(scores)
        m = pd.read_csv(e["metrics"], sep="\t")
        m = m[m["split"] == "test"]
        sizes[f"{e['label']} · {e['dataset']}"] = (m["lesion_voxels"].to_numpy(float), m["dice"].to_numpy(float))
        l1[e["label"]][e["dataset"]] = (m["l1_healthy"].to_numpy(float), m["l1_lesion"].to_numpy(float))
    rows, auprc = [], {}
    for label, (labs, scs) in pooled.items():
        lab, sc = np.concatenate(labs), np.concatenate(scs)
        auprc[label] = slice_auprc(lab, sc)
        healthy, lesion = (np.concatenate([v[i] for v in l1[label].values()]) for i in (0, 1))
        rows.append({"row": label, "slice_auprc": auprc[label], "abnormal_slices": int(lab.sum()), "slices": len(lab),
                     "l1_healthy": np.nanmean(healthy) if np.isfinite(healthy).any() else np.nan,
                     "l1_lesion": np.nanmean(lesion) if np.isfinite(lesion).any() else np.nan})
    pd.DataFrame(rows).to_csv(table, sep="\t", index=False)
    slicewise_figure(auprc, slicewise_png)
    lesion_size_figure(sizes, size_png)
    if l1_png:
        l1_bars(l1, l1_png)

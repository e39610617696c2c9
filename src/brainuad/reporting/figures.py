"""Figures of the report (matplotlib only, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def pick_example(segs: np.ndarray) -> tuple[int, int]:
    """The volume with the most lesion voxels and its axial slice with the largest lesion area.

    Parameters
    ----------
    segs : ndarray (N, D, H, W)

    Returns
    -------
    (volume index, slice index)
    """
    per_volume = segs.reshape(len(segs), -1).sum(1)
    i = int(np.argmax(per_volume))
    return i, int(np.argmax(segs[i].reshape(segs.shape[1], -1).sum(1)))


def qualitative_figure(panels: list[dict], path: str | Path) -> None:
    """Grid with one row per (dataset, model): input with ground truth, reconstruction, anomaly map,
    thresholded map with the ground-truth contour and, when any panel has one, the histograms of input vs
    reconstruction intensities on the healthy brain voxels of the whole volume (Figure 4.3 analogue).

    Parameters
    ----------
    panels : list of dict
        Keys ``title`` (row title), ``image``, ``seg``, ``mask``, ``map`` (H, W) slices, ``recon`` (H, W)
        or None, ``binary`` (H, W) bool; optional ``hist``: the dict of
        :func:`brainuad.analysis.domain_shift.histogram_shift` (``bin_edges``, ``hist_input``,
        ``hist_recon``, ``kld_p83``) or None.
    path : output image file
    """
    n = len(panels)
    with_hist = any(p.get("hist") is not None for p in panels)
    # SADM Stage II rows: the signed residual and the Unet prediction between reconstruction and final map
    with_pred = any(p.get("prediction") is not None for p in panels)
    extra = 2 if with_pred else 0
    ncol = 4 + extra + (1 if with_hist else 0)
    fig, axes = plt.subplots(n, ncol, figsize=(2.0 * ncol, 2.0 * n + 0.4), squeeze=False)
    titles = (["input + ground truth", "reconstruction"] + (["residual x - recon", "Unet prediction"] if with_pred else [])
              + ["anomaly map" if not with_pred else "final map", "thresholded + ground truth",
                 "healthy voxels: input vs recon"])
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=8)
    for full_row, p in zip(axes, panels):
        row = [full_row[0], full_row[1]] + list(full_row[2 + extra :])
        if with_pred:
            _prediction_panels(full_row[2], full_row[3], p)
        row[0].imshow(p["image"], cmap="gray", vmin=0, vmax=1)
        row[0].contour(p["seg"], levels=[0.5], colors="r", linewidths=0.7)
        if p.get("recon") is not None:
            row[1].imshow(p["recon"], cmap="gray", vmin=0, vmax=1)
        else:
            row[1].text(0.5, 0.5, "no reconstruction\n(learning-free)", ha="center", va="center", fontsize=7)
        vmax = float(np.percentile(p["map"][p["mask"] > 0], 99.5)) if (p["mask"] > 0).any() else 1.0
        row[2].imshow(p["map"], cmap="inferno", vmin=0, vmax=max(vmax, 1e-6))
        row[3].imshow(p["image"], cmap="gray", vmin=0, vmax=1)
        row[3].imshow(np.ma.masked_where(~p["binary"], p["binary"]), cmap="autumn", alpha=0.6, vmin=0, vmax=1)
        row[3].contour(p["seg"], levels=[0.5], colors="c", linewidths=0.7)
        row[0].set_ylabel(p["title"], fontsize=7)
        for ax in row[:4]:
            ax.set_xticks([])
            ax.set_yticks([])
        if with_hist:
            _histogram_panel(row[4], p.get("hist"))
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _prediction_panels(ax_res, ax_pred, p: dict) -> None:
    """Signed residual (input - reconstruction, diverging colours) and the model's own prediction in [0, 1]."""
    for ax in (ax_res, ax_pred):
        ax.set_xticks([])
        ax.set_yticks([])
    if p.get("prediction") is None or p.get("recon") is None:
        for ax in (ax_res, ax_pred):
            ax.text(0.5, 0.5, "-", ha="center", va="center", fontsize=7)
        return
    res = (p["image"] - p["recon"]) * (p["mask"] > 0)
    lim = max(float(np.abs(res).max()), 1e-6)
    ax_res.imshow(res, cmap="coolwarm", vmin=-lim, vmax=lim)
    ax_pred.imshow(p["prediction"], cmap="inferno", vmin=0, vmax=1)


def _histogram_panel(ax, hist: dict | None) -> None:
    """Input (grey) vs reconstruction (red) densities and P8.3's "KLD" = H(input) - H(recon) in nats."""
    if hist is None:
        ax.text(0.5, 0.5, "no reconstruction", ha="center", va="center", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    edges = hist["bin_edges"]
    ax.stairs(hist["hist_input"], edges, color="0.4", fill=True, alpha=0.5, label="input")
    ax.stairs(hist["hist_recon"], edges, color="r", lw=0.8, label="recon")
    ax.text(0.97, 0.95, f"KLD {hist['kld_p83']:.2f}", transform=ax.transAxes, ha="right", va="top", fontsize=6)
    ax.set_xlim(0, 1)
    ax.tick_params(labelsize=5)
    ax.set_yticks([])
    ax.legend(fontsize=5, loc="upper left", frameon=False)


def training_curves(logs: dict[str, str | Path], path: str | Path, smooth: int = 10, ncols: int = 4) -> None:
    """Training (running mean) and validation loss: one panel per trained model, one colour per fold.

    Parameters
    ----------
    logs : dict
        ``"trainset/model/run/fold-k" -> train_log.tsv`` (columns step, loss, val_loss).
    path : output image file
    smooth : int
        Window of the running mean of the training loss.
    ncols : int
        Panels per row; a study with many models gets more rows (the report splits a tall figure between
        rows of panels), so every legend stays inside its panel.
    """
    panels: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for key, f in sorted(logs.items()):
        head, fold = key.rsplit("/", 1)
        trainset, model, run = head.split("/", 2)
        title = f"{model}" + ("" if run == "default" else f" ({run})") + f" on {trainset}"
        panels.setdefault(title, []).append((fold, pd.read_csv(f, sep="\t")))
    n = max(len(panels), 1)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (title, items) in zip(axes.flat, panels.items()):
        for i, (fold, df) in enumerate(items):
            color = cmap(i % 10)
            ax.plot(df["step"], df["loss"].rolling(smooth, min_periods=1).mean(), color=color, alpha=0.5, lw=0.8)
            # +inf = no checkpoint selectable yet (the first stage of a staged GAN model): not drawn
            val = df.assign(val_loss=pd.to_numeric(df["val_loss"], errors="coerce").replace([np.inf, -np.inf], np.nan)
                            ).dropna(subset=["val_loss"])
            ax.plot(val["step"], val["val_loss"], "o-", color=color, ms=3, lw=1.2, label=f"{fold} (val)")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel("loss", fontsize=7)
        ax.tick_params(labelsize=6)
        losses = pd.to_numeric(pd.concat([df["loss"] for _, df in items]), errors="coerce").dropna()
        if losses.empty:  # a closed-form model (the covariance model) is fitted without gradient steps
            ax.text(0.5, 0.5, "fitted in closed form:\nno loss curve", ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
            continue
        if (losses > 0).all():
            ax.set_yscale("log")
        ax.legend(fontsize=5)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if not panels:
        axes[0][0].text(0.5, 0.5, "no trainable models", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


#: fewest swept values a sweep figure connects with a line (fewer: points only, and the panel says so)
MIN_TREND_POINTS = 3


def sweep_figure(long: pd.DataFrame, path: str | Path, *, param: str, metric_labels: dict[str, str],
                 reference: pd.DataFrame | None = None, reference_label: str = "reference",
                 title: str = "") -> None:
    """Metrics against a swept parameter: one panel per metric, one line per series (Figures 4.2 / 4.4).

    Parameters
    ----------
    long : DataFrame with columns ``series, metric, value, mean, std`` (one point per series, metric
        and swept value; a series is a dataset, or a model on a dataset)
    path : output image file
    param : name of the swept parameter (x axis)
    metric_labels : {metric: y-axis label}, in panel order
    reference : optional DataFrame ``series, metric, mean`` drawn as dashed horizontal lines in the
        series' colour (e.g. SSIM-ens next to the SSIM σ sweep, or the ENS level next to t_test)

    A series with fewer than :data:`MIN_TREND_POINTS` swept values is drawn as points without a connecting
    line, and its panel says so (two points always make a "trend").
    """
    metrics = list(metric_labels)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics) + 0.8, 3.8), squeeze=False)
    cmap = plt.get_cmap("tab10")
    series = list(dict.fromkeys(long["series"]))
    for ax, metric in zip(axes[0], metrics):
        part = long[long["metric"] == metric]
        short = False
        for k, name in enumerate(series):
            df = part[part["series"] == name].sort_values("value")
            if df.empty:
                continue
            color = cmap(k % 10)
            few = df["value"].nunique() < MIN_TREND_POINTS
            short = short or few
            ax.errorbar(df["value"], df["mean"], yerr=df["std"].fillna(0), marker="o", ms=4, capsize=2,
                        color=color, label=name, ls="none" if few else "-")
            if df["mean"].notna().any():  # marker at the best value of the sweep
                best = df.loc[df["mean"].idxmax()]
                ax.plot(best["value"], best["mean"], "*", ms=11, color=color, mec="k", mew=0.5)
            if reference is not None:
                ref = reference[(reference["series"] == name) & (reference["metric"] == metric)]
                if len(ref) and np.isfinite(ref["mean"].iloc[0]):
                    ax.axhline(float(ref["mean"].iloc[0]), ls="--", lw=1, color=color)
        if reference is not None:
            ax.plot([], [], "k--", lw=1, label=reference_label)
        ax.set_xlabel(param)
        ax.set_ylabel(metric_labels[metric])
        ax.legend(fontsize=7)
        if short:
            n = int(part["value"].nunique())
            ax.text(0.5, 0.02, f"only {n} swept value{'s' if n != 1 else ''}: points, no trend line "
                               f"(needs >= {MIN_TREND_POINTS})", transform=ax.transAxes, ha="center", va="bottom",
                    fontsize=7, color="0.25", bbox=dict(facecolor="white", edgecolor="0.6", alpha=0.9))
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def pixel_correlation(recons: np.ndarray, mask: np.ndarray, pixel: tuple[int, int]) -> np.ndarray:
    """Correlation of one pixel with every brain pixel across S reconstructions of a slice.

    This is one row of the correlation matrix of the full pixel covariance that ``mhd_full`` inverts.

    Parameters
    ----------
    recons : ndarray (S, H, W)
    mask : ndarray (H, W), brain
    pixel : (row, column)

    Returns
    -------
    ndarray (H, W): Pearson correlation in [-1, 1] inside the mask, NaN outside or where a pixel
    does not vary.
    """
    dev = recons - recons.mean(0, keepdims=True)
    ref = dev[:, pixel[0], pixel[1]]
    cov = np.einsum("s,shw->hw", ref, dev) / max(len(recons) - 1, 1)
    std = dev.std(0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / (std * ref.std(ddof=1))
    return np.where(mask > 0, corr, np.nan)


def mhd_figure(panels: dict[str, np.ndarray], seg: np.ndarray, pixel: tuple[int, int], path: str | Path,
               title: str = "") -> None:
    """Figure 4.5 analogue: input, mean reconstruction, S_mean, MHD_diag, MHD_full, final map and the
    correlation of one pixel with all others.

    Parameters
    ----------
    panels : dict of (H, W) arrays with keys ``input, mean reconstruction, S_mean, S_MHD_diag, S_MHD_full,
        final map, correlation``
    seg : (H, W) ground truth (contour on the input and the final map)
    pixel : the pixel of the correlation panel (marked)
    """
    keys = list(panels)
    fig, axes = plt.subplots(1, len(keys), figsize=(2.0 * len(keys), 2.5))
    for ax, key in zip(axes, keys):
        img = panels[key]
        if key == "correlation":
            ax.imshow(img, cmap="coolwarm", vmin=-1, vmax=1)
            ax.plot(pixel[1], pixel[0], "k+", ms=8)
        elif key in ("input", "mean reconstruction"):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img, cmap="inferno")
        if key in ("input", "final map"):
            ax.contour(seg, levels=[0.5], colors="c", linewidths=0.7)
        ax.set_title(key, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def domain_shift_figure(hist_files: list[str], labels: list[str], table: pd.DataFrame, path: str | Path) -> None:
    """Histograms of input vs reconstruction per model (rows) and contrast level (columns) + entropy shift.

    Parameters
    ----------
    hist_files : one .npz per model with ``bin_edges`` and ``input_<cl>`` / ``recon_<cl>`` densities
    labels : model labels, in the order of ``hist_files``
    table : DataFrame with ``model, contrast_level, kld_p83`` (H(input) - H(recon), P8.3's "KLD")
    path : output image
    """
    levels = sorted(table["contrast_level"].unique())
    fig, axes = plt.subplots(len(labels), len(levels) + 1, figsize=(2.3 * (len(levels) + 1), 1.9 * len(labels) + 0.6),
                             squeeze=False)
    for r, (f, label) in enumerate(zip(hist_files, labels)):
        with np.load(f) as z:
            edges = z["bin_edges"]
            centres = 0.5 * (edges[1:] + edges[:-1])
            for c, cl in enumerate(levels):
                ax = axes[r, c]
                ax.fill_between(centres, z[f"input_{cl}"], color="0.6", lw=0, label="input")
                ax.plot(centres, z[f"recon_{cl}"], color="tab:red", lw=0.8, label="reconstruction")
                ax.set_yticks([])
                ax.tick_params(labelsize=6)
                if r == 0:
                    ax.set_title(f"x^{cl:g}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(label, fontsize=8)
        ax = axes[r, -1]
        part = table[table["model"] == label].sort_values("contrast_level")
        ax.plot(part["contrast_level"], part["kld_p83"], "o-", ms=3)
        ax.axhline(0, color="k", lw=0.5)
        ax.tick_params(labelsize=6)
        if r == 0:
            ax.set_title("H(input) − H(recon)", fontsize=8)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

"""Inference time per volume, measured in the reconstruct jobs of a run (thesis P8.3 §5.4 comparison)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def inference_time_table(entries: list[dict], reference: str | None = None) -> pd.DataFrame:
    """Seconds per volume per table row, mean ± std over every (dataset, fold) reconstruct job.

    Parameters
    ----------
    entries : list of dict
        One per reconstruct job: ``row`` (display label), ``seconds_per_volume``, ``samples`` (stored
        reconstructions per volume), ``hardware``.
    reference : str, optional
        Row label the others are compared with: column ``vs_reference_pct`` = 100 · (t / t_ref − 1),
        e.g. −37 for a model 37 % faster than the reference.

    Returns
    -------
    DataFrame with columns ``row, seconds_per_volume, std, n_jobs, samples, hardware`` (+ ``vs_reference_pct``),
    rows in first-seen order.
    """
    df = pd.DataFrame(entries)
    if df.empty:
        raise ValueError("no reconstruct timings to tabulate")
    lines = []
    for row, part in df.groupby("row", sort=False):
        t = part["seconds_per_volume"].to_numpy(dtype=float)
        lines.append({"row": row, "seconds_per_volume": float(t.mean()),
                      "std": float(t.std(ddof=1)) if t.size > 1 else 0.0, "n_jobs": int(t.size),
                      "samples": ",".join(str(s) for s in sorted(set(part["samples"]))),
                      "hardware": "; ".join(sorted(set(part["hardware"])))})
    out = pd.DataFrame(lines)
    if reference is not None:
        ref = out.loc[out["row"] == reference, "seconds_per_volume"]
        if ref.empty:
            raise ValueError(f"reference row {reference!r} is not among {list(out['row'])}")
        out["vs_reference_pct"] = 100.0 * (out["seconds_per_volume"] / float(ref.iloc[0]) - 1.0)
    return out


def display(table: pd.DataFrame) -> pd.DataFrame:
    """Formatted copy for Markdown / the PDF: 's ± s' and a signed percentage."""
    shown = pd.DataFrame({"model": table["row"],
                          "s / volume": [f"{m:.3f} ± {s:.3f}" for m, s in zip(table["seconds_per_volume"], table["std"])],
                          "jobs": table["n_jobs"], "samples": table["samples"]})
    if "vs_reference_pct" in table:
        shown["vs reference"] = ["" if not math.isfinite(v) else f"{v:+.0f} %" for v in table["vs_reference_pct"]]
    shown["hardware"] = table["hardware"]
    return shown.set_index("model")


def read_timing(npz_path) -> dict:
    """``seconds_per_volume``, ``samples``, ``hardware`` stored by the reconstruct rule in its .npz."""
    with np.load(npz_path) as z:
        if "seconds_per_volume" not in z:
            raise ValueError(f"{npz_path}: no timing stored (written by an older version; rerun reconstruct)")
        return {"seconds_per_volume": float(z["seconds_per_volume"]), "samples": int(z["samples"]),
                "hardware": str(z["hardware"])}

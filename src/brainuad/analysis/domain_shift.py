"""Domain-shift / intensity-alignment analysis of P8.3 §4.5.2 and §5.3 (method-spec §2.7, Fig. P8.3-4).

* **Simulated contrast** (P8.3 §4.5.2): the [0, 1]-normalised grey values are raised to the power cl,
  ``x^(cl) = x ** cl`` (e.g. ``x^(2) = x**2``), for ``cl in (0.3, 0.7, 1.0, 1.5, 2.0)``. cl = 1 is the
  identity; every level is a monotone map of [0, 1] onto itself that fixes 0 and 1.
* **Histograms**: 500 bins on [0, 1], raw counts divided by the total count and the bin width
  (a density, as the method spec states).
* **"KLD"**: P8.3 prints ``KLD = [-sum p_input log p_input] - [-sum p_recon log p_recon]``, i.e.
  H(input) - H(reconstruction), a difference of entropies, not a KL divergence (method-spec §9 C12).

Entropy convention: :func:`entropy` normalises its argument to probabilities that sum to 1 (as
``scipy.stats.entropy`` does) and returns the Shannon entropy of the bin probabilities, in **nats**
by default (``base=2`` for bits). So a uniform histogram has entropy ``log(bins)`` and a single
occupied bin has 0, whether it is given counts or densities. Because both histograms share the same
bins, the difference of these discrete entropies equals the difference of the differential-entropy
estimates (``H_discrete + log(bin_width)``). Plugging the *densities* into the printed formula
instead scales every difference by ``1 / bin_width`` (500x); the ratios P8.3 reports ("lowers the KLD
by a factor of 2.3, 4.0 and 17.0") do not depend on that choice.

:func:`histogram_shift` returns both signs: ``entropy_difference = H(recon) - H(input)`` and
``kld_p83 = H(input) - H(recon)`` (the quantity as printed in P8.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONTRAST_LEVELS = (0.3, 0.7, 1.0, 1.5, 2.0)


def contrast_levels(x, levels: Sequence[float] = CONTRAST_LEVELS) -> dict:
    """Simulated contrasts ``x ** cl`` of [0, 1] intensities (P8.3 §4.5.2).

    Parameters
    ----------
    x : ndarray or torch.Tensor, any shape, values in [0, 1] (clipped to [0, 1] first)
    levels : sequence of float > 0

    Returns
    -------
    dict {cl: array of x's shape and type}; ``cl = 1.0`` returns the (clipped) input unchanged.
    """
    if any(float(cl) <= 0 for cl in levels):
        raise ValueError(f"contrast levels must be positive, got {list(levels)}")
    if hasattr(x, "clamp"):  # torch.Tensor
        xc = x.clamp(0.0, 1.0)
    else:
        xc = np.clip(np.asarray(x), 0.0, 1.0)
    return {float(cl): (xc if float(cl) == 1.0 else xc ** float(cl)) for cl in levels}


def intensity_histogram(values, bins: int = 500, range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Density histogram: counts / (total count * bin width).

    Parameters
    ----------
    values : array-like, any shape (flattened)
        Values outside ``range`` are clipped into the first / last bin (a reconstruction may leave
        [0, 1] slightly; ``np.histogram`` would drop such voxels).
    bins : int
    range : (float, float)

    Returns
    -------
    ndarray (bins,) float64; ``sum(density) * bin_width == 1`` (all zeros for empty input).
    """
    lo, hi = float(range[0]), float(range[1])
    v = np.clip(np.asarray(values, dtype=np.float64).ravel(), lo, hi)
    counts, _ = np.histogram(v, bins=int(bins), range=(lo, hi))
    if counts.sum() == 0:
        return np.zeros(int(bins), dtype=np.float64)
    return counts / (counts.sum() * ((hi - lo) / int(bins)))


def entropy(hist, base: float | None = None) -> float:
    """Shannon entropy of a histogram (counts or densities; normalised to sum 1 first).

    Parameters
    ----------
    hist : array-like (bins,), non-negative
    base : float, optional
        Logarithm base; None = natural log (nats).

    Returns
    -------
    float: ``-sum p log p`` over the non-empty bins, ``p = hist / sum(hist)``.
    """
    h = np.asarray(hist, dtype=np.float64).ravel()
    if (h < 0).any():
        raise ValueError("histogram values must be non-negative")
    total = h.sum()
    if total <= 0:
        raise ValueError("empty histogram")
    p = h[h > 0] / total
    out = float(-(p * np.log(p)).sum())
    return out / np.log(base) if base is not None else out


def histogram_shift(inputs, recons, masks, bins: int = 500, *, lesions=None, base: float | None = None) -> dict:
    """Input vs reconstruction intensity histograms on healthy brain voxels and their entropy shift.

    Parameters
    ----------
    inputs, recons : ndarray, same shape (e.g. (N, D, H, W) or (D, H, W)), intensities in [0, 1]
    masks : bool ndarray, same shape
        Voxels to use: the healthy region (brain mask, already without lesions), or the brain mask
        when ``lesions`` is given.
    bins : int
        Histogram bins on [0, 1] (500 in P8.3).
    lesions : bool ndarray, optional
        Annotated voxels, excluded (healthy = masks & ~lesions).
    base : float, optional
        Entropy log base (None = nats).

    Returns
    -------
    dict with ``bin_edges`` (bins + 1,), ``hist_input`` / ``hist_recon`` (bins,) densities,
    ``entropy_input``, ``entropy_recon``, ``entropy_difference`` = H(recon) - H(input),
    ``kld_p83`` = H(input) - H(recon) (P8.3's printed "KLD"), and ``n_voxels``.
    """
    x, r = np.asarray(inputs), np.asarray(recons)
    m = np.asarray(masks).astype(bool)
    if x.shape != r.shape or x.shape != m.shape:
        raise ValueError(f"inputs {x.shape}, recons {r.shape} and masks {m.shape} must have the same shape")
    if lesions is not None:
        les = np.asarray(lesions).astype(bool)
        if les.shape != m.shape:
            raise ValueError(f"lesions {les.shape} must have the shape of masks {m.shape}")
        m = m & ~les
    n = int(m.sum())
    if n == 0:
        raise ValueError("no healthy voxels selected")
    hx = intensity_histogram(x[m], bins)
    hr = intensity_histogram(r[m], bins)
    ex, er = entropy(hx, base), entropy(hr, base)
    return {"bin_edges": np.linspace(0.0, 1.0, int(bins) + 1), "hist_input": hx, "hist_recon": hr,
            "entropy_input": ex, "entropy_recon": er, "entropy_difference": er - ex, "kld_p83": ex - er,
            "n_voxels": n}

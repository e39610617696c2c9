"""How far the author's float16 covariance inverse moves S_MHD_full from brainuad's exact float64 Woodbury
result (plain script; the number quoted in the docstring of brainuad.scoring.mahalanobis.mhd_full_woodbury).

Data: 8 axial slices of 64 x 64 with a disk-shaped brain (1.8 k pixels per slice), a smooth random "anatomy",
N = 10 "reconstructions" = anatomy + smooth noise (std ~3 %), the input = anatomy + a bright square lesion.
Reference: ``mhd_full_woodbury`` (float64, exact). Public-code emulation: per slice the dense (P, P)
covariance + 1e-2 I inverted in float32, the inverse cast to float16, the difference vector rounded to
float16, ``t_i = d_i (Sigma^-1 d)_i``, ``sqrt`` with NaN -> 0. Both raw maps then go through the same
post-processing (per-volume min-max, Gaussian sigma 1, times ``1 - SSIM`` in the author_code conventions).

Prints the maximum difference relative to the raw map's maximum, and the maximum and mean absolute
difference of the final maps.

Usage::

    python benchmarks/bench_mhd_float16.py [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.ndimage as ndi
import torch

from brainuad.scoring.mahalanobis import _postprocess, _term_to_value, mhd_full_woodbury


def float16_inverse_map(x, r, m, lam):
    """Raw sqrt_nan0 map (G, P) with the float16 inverse of the dense covariance (the public code's path)."""
    n, g, p = r.shape
    out = torch.zeros(g, p, dtype=torch.float64)
    for gi in range(g):
        idx = torch.nonzero(m[gi]).flatten()
        rs = r[:, gi, idx].float()
        mu = rs.mean(0)
        dev = rs - mu
        cov = dev.T @ dev / (n - 1) + lam * torch.eye(idx.numel())
        inv16 = torch.linalg.inv(cov).half()
        d = x[gi, idx].float() - mu
        t = (d.half().float() @ inv16.float()) * d
        out[gi, idx] = _term_to_value(t.double(), "sqrt_nan0")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    d, h, w, n, lam = 8, 64, 64, 10, 1e-2
    yy, xx = np.mgrid[:h, :w]
    mask = np.broadcast_to(((yy - 32) ** 2 + (xx - 32) ** 2) < 24**2, (d, h, w)).copy()
    base = ndi.gaussian_filter(rng.random((d, h, w)), 2) * mask
    base = (base - base.min()) / (base.max() - base.min()) * mask
    recons = np.stack([base + 0.03 * ndi.gaussian_filter(rng.standard_normal((d, h, w)), 1) * mask for _ in range(n)])
    image = base.copy()
    image[3:5, 20:28, 20:28] += 0.4
    image *= mask
    x, r, m = torch.tensor(image.reshape(d, -1)), torch.tensor(recons.reshape(n, d, -1)), torch.tensor(mask.reshape(d, -1))
    exact = mhd_full_woodbury(x, r, m, lam).reshape(d, h, w)
    half = float16_inverse_map(x, r, m, lam).reshape(d, h, w)
    img = torch.tensor(image, dtype=torch.float32)[None, None]
    mu = torch.tensor(recons.mean(0), dtype=torch.float32)[None, None]
    mk = torch.tensor(mask)[None, None]

    def final(raw):
        return _postprocess(raw[None, None], img, mu, mk, True, 1.0, None, True, 1.0, 1.0, None,
                            "population", "mirror")[0, 0].double()

    fe, fh = final(exact), final(half)
    brain = torch.tensor(mask)
    print(f"raw map: max |float16 - float64| / max = {float((exact - half).abs().max() / exact.abs().max()):.1e}")
    print(f"final map (values in [0, {float(fe.max()):.2f}]): max |diff| = {float((fe - fh).abs().max()):.1e}, "
          f"mean |diff| in the brain = {float((fe - fh).abs()[brain].mean()):.1e}")


if __name__ == "__main__":
    main()

"""Benchmark of the SSIM and Mahalanobis anomaly scores on MNI152-based volumes (plain script).

Data: nilearn's MNI152 template at 2 mm (99 x 117 x 95), skull-stripped with
``load_mni152_brain_mask``, cropped to 96 x 96 axial slices and 50 slices (one volume of shape
(1, 1, 50, 96, 96)). N = 10 "reconstructions" = template + spatially correlated noise; the input =
template + a bright spherical "lesion" + noise.

Measures
  (a) mhd_full on one brain-masked 96 x 96 slice, N = 10: Woodbury vs a dense (P, P) covariance
      (torch.linalg.inv in float32 as the public code, and torch.linalg.solve in float64):
      speed ratio and max |difference| relative to the dense map's maximum;
  (b) one 96 x 96 x 50 volume, N = 10: seconds per volume of every registered score, mhd_full ms
      per slice, and the 3D whole-volume mhd_full (dims=3, P ~ 180 k brain voxels here);
  (c) SSIM-ens in one pass vs 8 ``skimage.metrics.structural_similarity`` calls per slice (2D) and
      per volume (3D): speed ratio and max |difference|.

Usage::

    python benchmarks/bench_scoring.py [--threads 2] [--device cpu|cuda] [--data file.npz] [--save-data file.npz]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy.ndimage as ndi
import torch
from skimage.metrics import structural_similarity

from brainuad.scoring import available, score
from brainuad.scoring.mahalanobis import _mhd_full_dense, mhd_full_woodbury
from brainuad.scoring.ssim import DEFAULT_SIGMAS

N_REC = 10


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def mni_volume() -> tuple[np.ndarray, np.ndarray]:
    """Skull-stripped MNI152 2 mm template and brain mask, cropped to (50, 96, 96) = (D, H, W)."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    t = load_mni152_template(resolution=2).get_fdata()
    m = load_mni152_brain_mask(resolution=2).get_fdata() > 0
    crop = (slice(1, 97), slice(11, 107), slice(18, 68))  # x, y, z; the brain spans x 13-85, y 14-103
    t, m = t[crop] * m[crop], m[crop]
    t = t / t.max()
    # (x, y, z) -> (z, y, x): axial slices first
    return np.ascontiguousarray(t.transpose(2, 1, 0)), np.ascontiguousarray(m.transpose(2, 1, 0))


def make_inputs(template: np.ndarray, mask: np.ndarray, seed: int = 0):
    """Input with a lesion and N noisy reconstructions, shapes (1, 1, D, H, W) / (N, 1, 1, D, H, W)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(template.shape)
    c = np.array(template.shape) // 2 + np.array([2, -8, 12])
    lesion = ((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= 6**2
    image = np.clip(template + 0.3 * lesion * mask + 0.01 * rng.standard_normal(template.shape), 0, 1) * mask
    recs = []
    for _ in range(N_REC):
        smooth = ndi.gaussian_filter(rng.standard_normal(template.shape), 1.5)
        noise = 0.03 * smooth / smooth.std() + 0.01 * rng.standard_normal(template.shape)
        recs.append(np.clip(template + noise, 0, 1) * mask)
    recons = np.stack(recs)
    return image[None, None].astype(np.float32), recons[:, None, None].astype(np.float32), mask[None, None]


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------


def timeit(fn, repeat: int = 5, device: str = "cpu", warmup: bool = True) -> float:
    """Best (minimum) wall time of ``fn()`` in seconds over ``repeat`` runs, after one warm-up run.

    The minimum, as Python's ``timeit`` recommends: on a shared machine the other processes only
    ever add time.
    """
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if warmup:
        fn()
        sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def _row(*cols, widths=(46, 14, 14)):
    print("".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cols, widths))))


def _sk(a, b, sigma):
    return structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=sigma, use_sample_covariance=True, full=True
    )[1]


# --------------------------------------------------------------------------------------------
# (a) one slice: Woodbury vs dense
# --------------------------------------------------------------------------------------------


def bench_slice(image, recons, mask, device):
    z = int(mask[0, 0].reshape(mask.shape[2], -1).sum(1).argmax())
    x = torch.as_tensor(image[0, 0, z]).reshape(1, -1).to(device)
    r = torch.as_tensor(recons[:, 0, 0, z]).reshape(N_REC, 1, -1).to(device)
    m = torch.as_tensor(mask[0, 0, z]).reshape(1, -1).to(device)
    p = int(m.sum())
    print(f"\n(a) mhd_full, one 96x96 slice (z={z}), P={p} brain pixels, N={N_REC}, lam=1e-2")
    _row("method (best of 20 / single run for dense)", "time [ms]", "speed-up")
    t_wb = timeit(lambda: mhd_full_woodbury(x, r, m, 1e-2, "sqrt_nan0"), 20, device)
    t_inv = timeit(lambda: _mhd_full_dense(x, r, m, 1e-2, "sqrt_nan0", "inv", torch.float32), 1, device, False)
    t_sol = timeit(lambda: _mhd_full_dense(x, r, m, 1e-2, "sqrt_nan0", "solve", torch.float64), 1, device, False)
    _row("Woodbury (float64, N x N solve)", f"{t_wb * 1e3:.2f}", "1")
    _row("dense torch.linalg.inv float32 (public code)", f"{t_inv * 1e3:.1f}", f"{t_inv / t_wb:.0f}x")
    _row("dense torch.linalg.solve float64", f"{t_sol * 1e3:.1f}", f"{t_sol / t_wb:.0f}x")
    print("max |Woodbury - dense| / max |dense|:")
    _row("term", "vs solve f64", "vs inv f32")
    for term in ("quad", "sqrt_nan0", "whitened"):
        wb = mhd_full_woodbury(x, r, m, 1e-2, term)
        ref64 = _mhd_full_dense(x, r, m, 1e-2, term, "solve", torch.float64)
        row = [term, f"{((wb - ref64).abs().max() / ref64.abs().max()).item():.1e}"]
        if term != "whitened":
            ref32 = _mhd_full_dense(x, r, m, 1e-2, term, "inv", torch.float32).double()
            row.append(f"{((wb - ref32).abs().max() / ref32.abs().max()).item():.1e}")
        else:
            row.append("-")
        _row(*row)
    quad = mhd_full_woodbury(x, r, m, 1e-2, "quad")
    print(f"negative terms (-> NaN -> 0 in the public code): {(quad < 0).sum().item() / p:.1%} of brain pixels")
    return t_inv / t_wb, t_sol / t_wb


# --------------------------------------------------------------------------------------------
# (b) whole volume: every registered score
# --------------------------------------------------------------------------------------------


def bench_volume(image, recons, mask, device):
    img, rec, msk = (torch.as_tensor(a).to(device) for a in (image, recons, mask))
    d = img.shape[2]
    to_slices = lambda t: t.transpose(-4, -3).reshape(*t.shape[:-5], -1, 1, *t.shape[-2:])  # noqa: E731
    s_img, s_rec, s_msk = to_slices(img), to_slices(rec), to_slices(msk)
    print(f"\n(b) one volume {tuple(img.shape)}, N={N_REC}: seconds per volume (best of 3)")
    _row("score", "volume input", "slice input")
    _row("", "(1,1,50,96,96)", "(50,1,96,96)")
    times = {}
    for name in available():
        tv = timeit(lambda: score(name, img, rec, msk), 3, device)
        ts = timeit(lambda: score(name, s_img, s_rec, s_msk), 3, device)
        times[name] = tv
        _row(name, f"{tv:.3f}", f"{ts:.3f}")
    t3 = timeit(lambda: score("mhd_full", img, rec, msk, dims=3), 3, device)
    _row("mhd_full dims=3 (whole-volume covariance)", f"{t3:.3f}", "-")
    tw3 = timeit(lambda: score("mhd_full", img, rec, msk, dims=3, term="whitened"), 3, device)
    _row("mhd_full dims=3, term=whitened", f"{tw3:.3f}", "-")
    x, r, m = img.reshape(d, -1), rec.reshape(N_REC, d, -1), msk.reshape(d, -1)
    t_raw = timeit(lambda: mhd_full_woodbury(x, r, m, 1e-2, "sqrt_nan0"), 5, device)
    print(f"mhd_full per slice: raw MHD {t_raw / d * 1e3:.2f} ms, full score incl. post-processing "
          f"{times['mhd_full'] / d * 1e3:.2f} ms (goal < 50 ms)")
    print(f"3D whole-volume covariance: P = {int(msk.sum())} brain voxels, {t3:.3f} s per volume")
    return times


# --------------------------------------------------------------------------------------------
# (c) SSIM-ens: one pass vs 8 scikit-image calls
# --------------------------------------------------------------------------------------------


def _skimage_ens(a, b, dims):
    """SSIM-ens from 8 scikit-image calls per slice (dims=2) or per volume (dims=3)."""
    if dims == 3:
        s = np.stack([_sk(a, b, sg) for sg in DEFAULT_SIGMAS])
    else:
        s = np.stack([np.stack([_sk(a[i], b[i], sg) for i in range(a.shape[0])]) for sg in DEFAULT_SIGMAS])
    w = np.exp(-s)
    w /= w.sum(0)
    return (w * s).sum(0)


def bench_ssim_ens(image, recons, mask, device):
    img, rec, msk = (torch.as_tensor(a).to(device) for a in (image, recons, mask))
    a, b = image[0, 0].astype(np.float64), recons.mean(0)[0, 0].astype(np.float64)
    print(f"\n(c) SSIM-ens ({len(DEFAULT_SIGMAS)} sigmas), one pass vs 8 skimage SSIM calls, one volume")
    _row("variant", "ours [s]", "skimage [s]", "speed-up", "max|diff|", widths=(46, 12, 13, 10, 11))
    ratios = {}
    for dims in (2, 3):
        kw = {"dims": dims, "covariance": "sample", "padding": "reflect"}  # scikit-image's convention
        t_ours = timeit(lambda: score("ssim_ens", img, rec, msk, **kw), 3, device)
        t_sk = timeit(lambda: _skimage_ens(a, b, dims), 3, warmup=False)
        ours = score("ssim_ens", img, rec, msk, **kw)[0, 0].cpu().numpy()
        diff = np.abs(ours - (1 - _skimage_ens(a, b, dims)) * mask[0, 0]).max()
        label = "2D, 50 slices x 8 sigmas" if dims == 2 else "3D, 8 sigmas on the volume"
        _row(label, f"{t_ours:.3f}", f"{t_sk:.3f}", f"{t_sk / t_ours:.1f}x", f"{diff:.1e}", widths=(46, 12, 13, 10, 11))
        ratios[dims] = t_sk / t_ours
    return ratios


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", help="npz with 'template' and 'mask' (D, H, W) instead of nilearn")
    ap.add_argument("--save-data", help="write the cropped template and mask to this npz")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.data:
        with np.load(args.data) as f:
            template, mask = f["template"], f["mask"]
    else:
        template, mask = mni_volume()
    if args.save_data:
        np.savez_compressed(args.save_data, template=template, mask=mask)
    image, recons, msk = make_inputs(template, mask)
    print(f"brainuad scoring benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device}; volume {template.shape}, {int(mask.sum())} brain voxels, N = {N_REC}")
    if hasattr(os, "getloadavg"):
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other processes skew timings)")
    r_inv, r_sol = bench_slice(image, recons, msk, args.device)
    bench_volume(image, recons, msk, args.device)
    r_ens = bench_ssim_ens(image, recons, msk, args.device)
    print("\nsummary (this run): Woodbury vs dense speed-up "
          f"{r_inv:.0f}x (inv f32) / {r_sol:.0f}x (solve f64); "
          f"SSIM-ens one pass vs skimage {r_ens[2]:.1f}x (2D), {r_ens[3]:.1f}x (3D)")


if __name__ == "__main__":
    main()

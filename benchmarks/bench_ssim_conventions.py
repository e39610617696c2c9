"""How much the SSIM conventions (config ``conventions``) change SSIM and the anomaly score 1 - SSIM on a
brain volume (plain script; the sizes quoted in config/README.md, "conventions").

Data: nilearn's bundled MNI152 template at 2 mm, brain-masked, 50 axial slices x 96 x 96 cut so that brain
tissue fills the first and last slices (as the thesis' axial crop does); the "reconstruction" = template +
smooth noise (3 %). SSIM with sigma = 1 in 3D (as the public code), author_code (population, mirror) vs
scikit-image's convention (sample, reflect), each switch alone too.

Prints, for the brain voxels of the first and last slice and for the other brain voxels, the maximum and the
99th percentile of |a - b| / |b| for SSIM and for 1 - SSIM.

Usage::

    python benchmarks/bench_ssim_conventions.py [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.ndimage as ndi
from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

from brainuad.scoring.ssim import ssim_map


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    mask = load_mni152_brain_mask(resolution=2).get_fdata() > 0
    t = load_mni152_template(resolution=2).get_fdata() * mask
    t, mask = (np.transpose(a, (2, 1, 0))[30:80, 10:106, 1:97] for a in (t, mask))
    t = t / t.max()
    rng = np.random.default_rng(args.seed)
    r = np.clip(t + 0.03 * ndi.gaussian_filter(rng.standard_normal(t.shape), 1) * mask, 0, 1)
    edge = np.zeros(mask.shape, bool)
    edge[[0, -1]] = True
    ref = ssim_map(t, r, 1.0, 1.0, 3, covariance="sample", padding="reflect")
    print(f"brain voxels: {int((mask & edge).sum())} in the first/last slice, {int((mask & ~edge).sum())} inside")
    print(f"{'vs sample/reflect':<28}{'region':<14}{'SSIM max':>10}{'p99':>9}{'1-SSIM max':>12}{'p99':>9}")
    for cov, pad in (("population", "mirror"), ("population", "reflect"), ("sample", "mirror")):
        out = ssim_map(t, r, 1.0, 1.0, 3, covariance=cov, padding=pad)
        rel = np.abs(out - ref) / np.abs(ref)
        rel1 = np.abs(out - ref) / np.maximum(np.abs(1 - ref), 1e-12)
        for name, region in (("first/last", mask & edge), ("inside", mask & ~edge)):
            print(f"{cov + '/' + pad:<28}{name:<14}{rel[region].max():>10.4f}{np.percentile(rel[region], 99):>9.4f}"
                  f"{rel1[region].max():>12.4f}{np.percentile(rel1[region], 99):>9.4f}")


if __name__ == "__main__":
    main()

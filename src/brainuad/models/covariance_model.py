"""Covariance model ``cm`` (Saase, Wenz, Ganslandt, Groden, Maros, "Simple statistical methods for
unsupervised brain anomaly detection on MRI are competitive to deep learning methods", arXiv:2011.12735,
2020; P8.5's "CM").

The healthy *training* volumes of the fold are the reference distribution: at every axial slice position
z, the N training slices define a mean ``mu_z`` and a full pixel covariance ``Sigma_z = D_z^T D_z / (N - 1)
+ lam I`` over the brain pixels of the test slice. The anomaly map is the pixel-wise Mahalanobis distance
of the test slice to that distribution, computed exactly with the low-rank Woodbury solve of
:func:`brainuad.scoring.mahalanobis.mhd_full_woodbury` (the same machinery and ``term`` conventions as the
``mhd_full`` scoring, whose reference set is N reconstructions instead; never a P x P matrix).

"Training" is closed-form: :meth:`fit_reference` stores the training volumes (no gradient steps). The
workflow's ``train`` rule is the fitting stage (one job per training set and fold, from the fold's
training split, like every other model); :func:`brainuad.training.fit` calls :meth:`fit_reference` for a
model with ``closed_form = True``.

Deviations: the paper's volumes are registered 2D slices at its own resolution; the ridge ``lam`` (1e-2,
the ``mhd_full`` default) regularises the rank-deficient covariance (N << P) where the paper does not
state one; no post-processing here (the evaluation's own applies); the checkpoint holds the N reference
volumes (float32: N x D x H x W x 4 bytes, e.g. 0.5 GB for 200 volumes of 96 x 96 x 64).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from . import register
from ..scoring.mahalanobis import TERMS, mhd_full_woodbury


@register("cm")
class CovarianceModel(nn.Module):
    """Pixel-space Mahalanobis distance to the healthy training volumes, per slice position.

    Parameters
    ----------
    image_size : (int, int, int)
        Volume size (D, H, W) (the workflow passes the packed volumes' size).
    lam : float
        Ridge added to the covariance diagonal (> 0).
    term : one of ``brainuad.scoring.mahalanobis.TERMS``
        Per-pixel value of the quadratic form (``mhd_full``'s conventions; default ``"sqrt_nan0"``).
    slices_per_solve : int
        Slice positions solved together (memory: ``slices_per_solve * N * H * W`` float64 values).

    Attributes
    ----------
    reference : Tensor (N, D, H, W)
        The healthy training volumes (empty, N = 0, before :meth:`fit_reference`).
    """

    input_dims = 3
    trainable = True
    closed_form = True
    produces = "map"

    def __init__(self, image_size=(32, 64, 64), lam: float = 1e-2, term: str = "sqrt_nan0", slices_per_solve: int = 8):
        super().__init__()
        if term not in TERMS:
            raise ValueError(f"term must be one of {TERMS}, got {term!r}")
        if float(lam) <= 0:
            raise ValueError(f"lam must be positive, got {lam}")
        self.image_size = tuple(int(s) for s in image_size)
        if len(self.image_size) != 3:
            raise ValueError(f"image_size must be (D, H, W), got {image_size}")
        self.lam, self.term, self.slices_per_solve = float(lam), term, max(int(slices_per_solve), 1)
        self.register_buffer("reference", torch.zeros((0, *self.image_size)))

    def fit_reference(self, volumes: np.ndarray) -> None:
        """Store the healthy training volumes (N, D, H, W) in [0, 1] (N >= 2) as the reference."""
        vols = np.asarray(volumes, dtype=np.float32)
        if vols.ndim != 4 or tuple(vols.shape[1:]) != self.image_size:
            raise ValueError(f"expected training volumes (N, {', '.join(map(str, self.image_size))}), got {vols.shape}")
        if vols.shape[0] < 2:
            raise ValueError(f"the covariance model needs at least 2 training volumes, got {vols.shape[0]}")
        self.reference = torch.from_numpy(vols.copy()).to(self.reference.device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "reference"
        if key in state_dict:  # the number of reference volumes is known only from the checkpoint
            self.reference = torch.empty_like(state_dict[key], device=self.reference.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x, mask: (B, 1, D, H, W) -> pixel-wise Mahalanobis distance (B, 1, D, H, W), >= 0, 0 outside mask."""
        n = self.reference.shape[0]
        if n < 2:
            raise RuntimeError("the covariance model has no reference volumes: fit it (fit_reference) first")
        if tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"expected volumes (B, 1, {', '.join(map(str, self.image_size))}), got {tuple(x.shape)}")
        d = self.image_size[0]
        p = self.image_size[1] * self.image_size[2]
        ref = self.reference.reshape(n, d, p)
        out = torch.zeros(x.shape, dtype=x.dtype, device=x.device)
        for b in range(x.shape[0]):
            xb, mb = x[b, 0].reshape(d, p), mask[b, 0].reshape(d, p).bool()
            for z0 in range(0, d, self.slices_per_solve):
                z1 = min(z0 + self.slices_per_solve, d)
                val = mhd_full_woodbury(xb[z0:z1], ref[:, z0:z1].to(x.device), mb[z0:z1], self.lam, self.term)
                out[b, 0, z0:z1] = val.reshape(z1 - z0, *self.image_size[1:]).to(x.dtype)
        return out

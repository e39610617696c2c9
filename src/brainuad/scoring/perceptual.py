"""The RA / PHANES score: the l1 residual combined with an upsampled pixel-wise LPIPS-style feature distance.

RA (Bercea et al., MIDL 2023) and PHANES (Bercea et al., MICCAI 2023) weight the residual of the
pseudo-healthy reconstruction by a spatial perceptual distance between the input and the reconstruction
(thesis P8.3: "l1 combined with upsampled pixel-wise LPIPS"; the authors' code: LPIPS with
``spatial=True``, smoothed by a Gaussian of sigma 1.2 px). Per axial slice::

    map = |x - x_rec| * G_sigma( mean_l up( w_l . (phi_l(x) - phi_l(x_rec))^2 ) )

with ``phi_l`` the channel-normalised feature maps of the configured backbone
(:func:`brainuad.models.backbones.load_backbone`), ``up`` bilinear upsampling to the slice size
(:func:`brainuad.models.backbones.feature_distance_map`) and ``w_l`` the LPIPS linear calibration weights
when the backbone is VGG16 and its weights file holds them (``lin<l>.model.1.weight`` / ``lin<l>.weight``,
as the file :mod:`brainuad.evaluation.lpips` reads), else the channel sum ("LPIPS-style"). The mean over
layers is LPIPS's spatial map (a sum over layers) divided by their number: a constant factor, which changes
no threshold-based result.

Deviations from the authors' code: the residual is not contrast-equalised (CLAHE) and not percentile
normalised before the product; the LPIPS network is the configured backbone (the authors: LPIPS-SqueezeNet).

Nothing is downloaded: when the backbone's weights are missing the scoring raises
:class:`~brainuad.models.backbones.BackboneNotConfigured`, and the workflow reports the row as
"not configured" (:func:`brainuad.scoring.stored.score_stored`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from . import register


def _lin_weights(spec: dict) -> list[torch.Tensor] | None:
    """LPIPS calibration weights (1, C_l, 1, 1) of the backbone's layers, or None when the file has none."""
    if spec.get("arch") != "vgg16" or not spec.get("weights"):
        return None
    state = torch.load(Path(spec["weights"]).expanduser(), map_location="cpu", weights_only=False)
    lins = {}
    for k, v in state.items():
        for j in range(5):
            if k in (f"lin{j}.model.1.weight", f"lin{j}.weight"):
                lins[j + 1] = v.float()
    layers = spec.get("layers") or (1, 2, 3, 4, 5)
    if not all(i in lins for i in layers):
        return None
    return [lins[i] for i in layers]


@lru_cache(maxsize=2)
def _network(spec_key: str, device: str):
    """(backbone, linear weights or None) of a spec (given as sorted JSON), loaded once per process."""
    from ..models.backbones import load_backbone

    spec = json.loads(spec_key)
    net = load_backbone(spec, in_channels=1, device=device).requires_grad_(False)
    lins = _lin_weights(spec)
    return net, None if lins is None else [w.flatten().to(device) for w in lins]


@register("l1_lpips")
def l1_lpips(image, recons, mask, backbone: dict | None = None, sigma: float = 1.2, batch: int = 64):
    """|x - mean_s(x_rec_s)| times the smoothed pixel-wise feature distance of x and mean_s(x_rec_s).

    Parameters
    ----------
    image : Tensor (B, 1, H, W) slices or (B, 1, D, H, W) volumes, in [0, 1]
    recons : Tensor (S, *image.shape); averaged over S first
    mask : BoolTensor of image's shape
    backbone : dict
        A :func:`~brainuad.models.backbones.load_backbone` spec, e.g. ``{kind: imagenet, arch: vgg16,
        weights: lpips_vgg.pth}`` (LPIPS proper when the file holds the calibration layers).
    sigma : float
        In-plane Gaussian smoothing of the distance (px; the authors' 1.2); 0 = none.
    batch : int
        Slices per network call.

    Returns
    -------
    Tensor of image's shape, >= 0, zero outside the mask.

    Raises
    ------
    BackboneNotConfigured
        No backbone, or its weights file is missing.
    """
    from ..models.backbones import BackboneNotConfigured, feature_distance_map
    from .ssim import gaussian_filter

    if not backbone:
        raise BackboneNotConfigured({}, "scoring l1_lpips needs `backbone:` (a local weights file)")
    rec = recons.float().mean(0).clamp(0, 1)
    x = image.float()
    shape = x.shape
    xs, rs = x.reshape(-1, 1, *shape[-2:]), rec.reshape(-1, 1, *shape[-2:])
    net, lins = _network(json.dumps(backbone, sort_keys=True), str(x.device))
    dist = torch.zeros_like(xs)
    ms = mask.reshape(-1, *shape[-2:]).flatten(1).any(1)
    todo = torch.nonzero(ms).flatten().tolist()  # slices with brain only
    with torch.no_grad():
        for i in range(0, len(todo), batch):
            idx = todo[i : i + batch]
            dist[idx] = feature_distance_map(net, xs[idx], rs[idx], weights=lins)
    if sigma > 0:
        dist = gaussian_filter(dist, float(sigma), dims=2)
    out = (xs - rs).abs() * dist
    return out.reshape(shape) * mask.to(out.dtype)

"""Run a model over whole volumes and keep what scoring needs.

2D models get the slice stack of one volume as a batch (in chunks of ``batch_size`` slices);
3D models get whole volumes. Reconstruction models store ``samples`` reconstructions per volume;
map-producing models (feature-based, learning-free) store their anomaly map.
"""

from __future__ import annotations

import numpy as np
import torch


def set_attributes(model, attributes: dict, name: str = "model"):
    """Apply test-time switches (``reconstruct.attributes``, e.g. a cDDPM's ``encoder_crop``) to ``model``.

    Raises ValueError naming the key when the model has no such attribute (a typo would otherwise be a
    silent no-op). Returns the model.
    """
    for key, value in (attributes or {}).items():
        if not hasattr(model, key):
            raise ValueError(f"reconstruct.attributes.{key}: {name} has no attribute {key!r}")
        setattr(model, key, value)
    return model


@torch.no_grad()
def run_model(model, images: np.ndarray, masks: np.ndarray, *, samples: int = 1, noise_level=None,
              batch_size: int = 64, seed: int = 0, device: torch.device | str = "cpu") -> np.ndarray:
    """Reconstruct (or map) every volume.

    Parameters
    ----------
    model : nn.Module from :func:`brainuad.models.build`, in eval mode on ``device``
    images, masks : ndarray (N, D, H, W)
    samples : int
        Reconstructions per volume (S); ignored for map-producing models.
    noise_level : optional
        Passed to ``model.reconstruct`` (diffusion models: t_test or a list of them).
    batch_size : int
        Slices per forward pass for 2D models.
    seed : int
        Seeds a ``torch.Generator`` on the device, so stochastic models are reproducible.

    Returns
    -------
    ndarray float16: (S, N, D, H, W) reconstructions, or (N, D, H, W) maps when
    ``model.produces == "map"``.
    """
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    produces = getattr(model, "produces", "recon")
    n = images.shape[0]
    out = np.zeros(((n,) if produces == "map" else (samples, n)) + images.shape[1:], dtype=np.float16)
    for i in range(n):
        x = torch.from_numpy(np.asarray(images[i], dtype=np.float32)).to(device)
        m = torch.from_numpy(np.asarray(masks[i] > 0)).to(device)
        if model.input_dims == 3:
            xb, mb = x[None, None], m[None, None]
            if produces == "map":
                out[i] = model.anomaly_map(xb, mb)[0, 0].float().cpu().numpy()
            else:
                rec = model.reconstruct(xb, mb, noise_level=noise_level, samples=samples, generator=gen)
                out[:, i] = rec[:, 0, 0].float().cpu().numpy()
            continue
        for j in range(0, x.shape[0], batch_size):
            xb, mb = x[j : j + batch_size, None], m[j : j + batch_size, None]
            if produces == "map":
                out[i, j : j + batch_size] = model.anomaly_map(xb, mb)[:, 0].float().cpu().numpy()
            else:
                rec = model.reconstruct(xb, mb, noise_level=noise_level, samples=samples, generator=gen)
                out[:, i, j : j + batch_size] = rec[:, :, 0].float().cpu().numpy()
    return out

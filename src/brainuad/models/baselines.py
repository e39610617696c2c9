"""Learning-free baselines."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from . import register


@register("thresh")
class HistogramThreshold(nn.Module):
    """``Thresh`` (Meissen et al., BrainLes 2022): histogram-equalised intensity as the anomaly map.

    The brain voxels of each volume are histogram-equalised (scikit-image ``equalize_hist``
    restricted to the brain mask); bright voxels are anomalous. The binarisation threshold is tuned
    on the unhealthy validation set by the same threshold search as every other model, so the
    baseline has no parameters to train.

    Parameters
    ----------
    nbins : int
        Histogram bins of the equalisation.
    invert : bool
        Use 1 - equalised intensity (dark lesions); False in the thesis.
    """

    input_dims = 3
    trainable = False
    produces = "map"

    def __init__(self, nbins: int = 256, invert: bool = False):
        super().__init__()
        self.nbins = int(nbins)
        self.invert = bool(invert)

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x, mask: (B, 1, D, H, W) -> map (B, 1, D, H, W) in [0, 1], zero outside the mask."""
        from skimage.exposure import equalize_hist

        xs = x.detach().float().cpu().numpy()
        ms = mask.detach().cpu().numpy() > 0
        out = np.zeros_like(xs, dtype=np.float32)
        for b in range(xs.shape[0]):
            if ms[b].any():
                eq = equalize_hist(xs[b], nbins=self.nbins, mask=ms[b]).astype(np.float32)
                out[b] = np.where(ms[b], 1.0 - eq if self.invert else eq, 0.0)
        return torch.from_numpy(out).to(x.device)

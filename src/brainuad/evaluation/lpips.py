"""LPIPS (Zhang et al., CVPR 2018, VGG16 variant) from a local weights file — never downloaded.

The thesis' Table 4.2 reports LPIPS next to SSIM, PSNR and l1. LPIPS needs a pre-trained feature
network; this project never fetches weights at run time, so the metric runs only when
``evaluation.lpips_weights`` names a local file, and the tables otherwise say "not configured".

Weights file: one ``torch.save`` state dict holding the VGG16 convolutions under torchvision's names
(``features.<i>.weight`` / ``features.<i>.bias``, i in 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
and the five linear calibration layers of the ``lpips`` package (``lin<k>.model.1.weight`` or
``lin<k>.weight``, shape (1, C_k, 1, 1)). Merging torchvision's ``vgg16`` features with the lpips
package's ``vgg.pth`` gives exactly that.

Distance of two images: features at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of both inputs (grey
replicated to RGB, mapped to [-1, 1], then the LPIPS scaling layer), unit-normalised over channels,
squared difference, weighted by the linear layer, averaged over space and summed over the layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..models.backbones import vgg16_layers

_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
#: channels of the five VGG16 stages LPIPS compares (one linear calibration layer each)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class LPIPS(nn.Module):
    """LPIPS-VGG distance with weights from ``weights_path`` (see the module docstring for its format)."""

    def __init__(self, weights_path: str | Path):
        super().__init__()
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"evaluation.lpips_weights: {path} does not exist")
        self.features, self.taps = vgg16_layers()  # shared with the feature backbones
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        state = torch.load(path, map_location="cpu", weights_only=True)
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        lins = {}
        for k, v in state.items():
            for j in range(5):
                if k in (f"lin{j}.model.1.weight", f"lin{j}.weight"):
                    lins[f"{j}.weight"] = v
        try:
            self.features.load_state_dict(feats)
            self.lins.load_state_dict(lins)
        except RuntimeError as err:
            raise ValueError(f"{path}: not an LPIPS-VGG weights file ({err})") from err
        self.eval().requires_grad_(False)

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], x
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances (B,) of grey images a, b (B, 1, H, W) in [0, 1]."""
        def prep(x):
            x = x.expand(-1, 3, -1, -1) * 2 - 1
            return (x - _SHIFT.to(x)) / _SCALE.to(x)

        fa, fb = self._feats(prep(a)), self._feats(prep(b))
        return sum(lin((x - y).pow(2)).mean((1, 2, 3)) for lin, x, y in zip(self.lins, fa, fb))


def write_random_weights(path: str | Path, seed: int = 0) -> Path:
    """Write a weights file in the layout :class:`LPIPS` reads, with seeded random weights.

    For tests and benchmarks that need a loadable file (its shapes and cost, not LPIPS' values): VGG16
    convolutions He-initialised with zero biases, in ``features`` order, then the five calibration layers
    drawn from U[0, 1). Nothing is downloaded.

    Parameters
    ----------
    path : str or Path
        The ``.pth`` file to write.
    seed : int
        Seed of the ``torch.Generator`` that draws every weight.

    Returns
    -------
    Path
        ``path``.
    """
    g = torch.Generator().manual_seed(int(seed))
    state = {}
    for i, layer in enumerate(vgg16_layers()[0]):
        if isinstance(layer, nn.Conv2d):
            cout, cin = layer.out_channels, layer.in_channels
            state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
            state[f"features.{i}.bias"] = torch.zeros(cout)
    for k, c in enumerate(LPIPS_CHANNELS):
        state[f"lin{k}.model.1.weight"] = torch.rand(1, c, 1, 1, generator=g)
    torch.save(state, path)
    return Path(path)


def lpips_volume(metric: LPIPS, image: np.ndarray, recon: np.ndarray, mask: np.ndarray, batch: int = 32) -> float:
    """Mean LPIPS over the axial slices of a volume (D, H, W) that contain brain."""
    slices = np.flatnonzero(np.asarray(mask).reshape(mask.shape[0], -1).any(1))
    if slices.size == 0:
        return float("nan")
    dev = next(metric.parameters()).device
    vals = []
    for i in range(0, slices.size, batch):
        sl = slices[i : i + batch]
        a = torch.from_numpy(np.asarray(image[sl], np.float32)).unsqueeze(1).to(dev)
        b = torch.from_numpy(np.clip(np.asarray(recon[sl], np.float32), 0, 1)).unsqueeze(1).to(dev)
        vals.append(metric(a, b).cpu())
    return float(torch.cat(vals).mean())


def lpips_metric(weights_path: str | Path | None, device="auto"):
    """The ``lpips`` callable of :func:`brainuad.evaluation.protocol.evaluate_healthy`, or None.

    Parameters
    ----------
    weights_path : path or None
        ``evaluation.lpips_weights``: a local file (nothing is ever downloaded); None or "" = not configured.
    device : str, default "auto"
        As :func:`brainuad.training.resolve_device` takes it.

    Returns
    -------
    None, or ``(image, recon, mask) -> float`` on (D, H, W) volumes (:func:`lpips_volume`).
    """
    if not weights_path:
        return None
    from ..training import resolve_device

    net = LPIPS(weights_path).to(resolve_device(device))
    return lambda image, recon, mask: lpips_volume(net, image, recon, mask)

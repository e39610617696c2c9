"""Slice-sequence VAE of Behrendt et al. (MIDL 2022, "Capturing inter-slice dependencies of 3D brain MRI
scans for unsupervised anomaly detection"; thesis baseline "SVAE"): ``svae``.

The model takes a whole volume (``input_dims`` 3) and treats it as a sequence of axial slices:

1. a 2D convolutional encoder (the layout of :class:`brainuad.models.spatial_vae.SpatialVAE`: strided
   kernel-4 convolutions, BatchNorm, LeakyReLU) maps every slice to a feature vector of ``d_model``;
2. a transformer encoder (``layers`` layers, ``heads`` heads, learned position embedding of the slice
   index) runs over the sequence of the D slice vectors, so every slice's latent sees the others
   (inter-slice dependencies);
3. per slice, a linear layer gives (mu, logvar) of a ``latent_dim`` posterior; z is decoded by a 2D
   transposed-convolution decoder, slice by slice.

Loss: l1 between the volume and its slice-wise reconstruction + ``beta_kl`` (0.001, thesis) * KL,
summed over the latent units and averaged over slices and volumes. Test: posterior means decoded;
the anomaly map is the l1 residual of every slice. The transformer sizes are not stated in the thesis
(method-spec §4.8); the defaults are this package's.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .base import posterior_reconstructions
from .spatial_vae import _down, _up


@register("svae")
class SliceSequenceVAE(nn.Module):
    """2D encoder per slice -> transformer over the slice sequence -> 2D decoder per slice.

    Parameters
    ----------
    image_size : (int, int, int)
        (D, H, W) of the volumes; H and W divisible by ``2 ** len(channels)``.
    channels : sequence of int
        Feature maps of the 2D encoder levels (mirrored by the decoder).
    d_model : int
        Width of the slice tokens of the transformer.
    latent_dim : int
        Per-slice latent size.
    layers, heads : int
        Transformer encoder layers and attention heads (``d_model`` divisible by ``heads``).
    beta_kl : float
        KL weight (thesis 0.001).
    """

    input_dims = 3
    trainable = True
    produces = "recon"
    random_device = "model"

    def __init__(self, image_size=(50, 96, 96), channels=(32, 64, 128, 256), d_model=256, latent_dim=128,
                 layers=2, heads=4, beta_kl=0.001):
        super().__init__()
        d, h, w = (int(s) for s in image_size)
        factor = 2 ** len(channels)
        if h % factor or w % factor:
            raise ValueError(f"image_size {list(image_size)}: H and W must be divisible by 2**len(channels) = {factor}")
        if d_model % heads:
            raise ValueError(f"d_model {d_model} must be divisible by heads {heads}")
        self.image_size = (d, h, w)
        self.latent_dim, self.beta_kl = int(latent_dim), float(beta_kl)
        chans = [1, *[int(c) for c in channels]]
        self.bottom = (chans[-1], h // factor, w // factor)
        flat = self.bottom[0] * self.bottom[1] * self.bottom[2]
        self.encoder = nn.Sequential(*[_down(2, a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.to_token = nn.Linear(flat, d_model)
        self.position = nn.Parameter(torch.zeros(1, d, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.to_latent = nn.Linear(d_model, 2 * self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, flat)
        rev = chans[::-1]
        self.decoder = nn.Sequential(*[_up(2, a, b) for a, b in zip(rev[:-2], rev[1:-1])], _up(2, rev[-2], rev[-2]))
        self.head = nn.Conv2d(rev[-2], 1, 1)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.image_size:
            d, h, w = self.image_size
            raise ValueError(f"svae expects volumes of shape (B, 1, {d}, {h}, {w}), got {tuple(x.shape)}")

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, D, H, W) -> mu, logvar, each (B, D, latent_dim)."""
        self._check(x)
        b, _, d, h, w = x.shape
        feats = self.encoder(x.transpose(1, 2).reshape(b * d, 1, h, w)).flatten(1)   # (B*D, flat)
        tokens = self.to_token(feats).view(b, d, -1) + self.position
        mu, logvar = self.to_latent(self.transformer(tokens)).chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, D, latent_dim) -> (B, 1, D, H, W)."""
        b, d, _ = z.shape
        hmap = self.from_latent(z.reshape(b * d, -1)).view(b * d, *self.bottom)
        out = self.head(self.decoder(hmap))                                            # (B*D, 1, H, W)
        return out.view(b, d, 1, *out.shape[-2:]).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.posterior(x)[0])

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """l1 (mean over voxels) + beta_kl * KL (summed over latent units, mean over slices and volumes)."""
        mu, logvar = self.posterior(batch)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        rec = self.decode(mu + eps * (0.5 * logvar).exp())
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1).mean()
        return F.l1_loss(rec, batch) + self.beta_kl * kl

    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """(B, 1, D, H, W) -> (samples, B, 1, D, H, W); the first decodes the posterior means."""
        mu, logvar = self.posterior(x)
        return posterior_reconstructions(self.decode, mu, logvar, samples, generator)

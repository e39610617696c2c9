"""The 2D and 3D VAEs of P8.1 (Bengs, Behrendt et al., IJCARS 2021; thesis Ch3.4.1, Table 4.1): ``vae2d_p81``, ``vae3d``.

Both models share one layer layout and differ only in the dimensionality of their operations
(``Conv2d`` / ``Conv3d``, ``BatchNorm2d`` / ``BatchNorm3d``, ``ConvTranspose2d`` / ``ConvTranspose3d``),
as P8.1 requires for its 2D-vs-3D comparison:

* encoder: ``len(channels)`` strided convolutions (kernel 4, stride 2, padding 1; BatchNorm,
  LeakyReLU 0.2); the first one already halves the input (64 -> 32 at the thesis' 64^3 / 64^2 sizes,
  P8.1-Fig2);
* a dense ("fully connected") latent: ``latent_dim`` = 128 for the 2D VAE, 512 for the 3D VAE
  (P8.1, chosen on validation performance); the encoder's last feature map is flattened into
  (mu, logvar);
* decoder: a dense layer back to the bottom feature map, ``len(channels)`` transposed convolutions
  (kernel 4, stride 2, padding 1) mirroring the encoder, and a 1x1(x1) output convolution.

The per-layer widths of P8.1-Fig2 are printed only inside the figure (method-spec §4.1): the default
``channels`` (32, 64, 128, 256) is this package's choice, shared by both models.

Loss (P8.1 "Training and evaluation", Ch3.4.1): l1 between the model output and the *un-erased*
input plus ``beta_kl`` * KL(q(z|x~) || N(0, I)), where x~ is the input after spatial erasing
(:mod:`brainuad.training.erasing`, applied by the training loop to the input only and passed here
as ``batch`` with the clean ``target``). The KL weight is not stated for P8.1; the default 0.001 is the
thesis' weight of its other VAEs (Baur-style VAE, SVAE: beta = 0.001), which with a per-voxel mean l1
and a KL summed over the latent units keeps the reconstructions from collapsing to the mean image.

At test time the posterior mean is decoded (no erasing; the anomaly map is the l1 residual).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .base import posterior_reconstructions

_OPS = {
    2: (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d),
    3: (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d),
}


def _down(dims: int, cin: int, cout: int) -> nn.Sequential:
    conv, _, norm = _OPS[dims]
    return nn.Sequential(conv(cin, cout, 4, stride=2, padding=1, bias=False), norm(cout), nn.LeakyReLU(0.2, inplace=True))


def _up(dims: int, cin: int, cout: int) -> nn.Sequential:
    _, tconv, norm = _OPS[dims]
    return nn.Sequential(tconv(cin, cout, 4, stride=2, padding=1, bias=False), norm(cout), nn.LeakyReLU(0.2, inplace=True))


class SpatialVAE(nn.Module):
    """Dense-latent VAE over 2D slices or 3D volumes (the layout shared by ``vae2d_p81`` and ``vae3d``).

    Parameters
    ----------
    image_size : sequence of int
        (H, W) for ``dims`` = 2, (D, H, W) for ``dims`` = 3; each must be divisible by ``2 ** len(channels)``.
    channels : sequence of int
        Feature maps of the encoder levels (mirrored by the decoder).
    latent_dim : int
        Size of the dense latent z.
    beta_kl : float
        Weight of the KL term.
    dims : {2, 3}
        Dimensionality of every operation.
    """

    trainable = True
    produces = "recon"
    random_device = "model"
    #: ``loss`` accepts ``target`` (the un-erased batch) so the loop may erase the input only
    accepts_target = True

    def __init__(self, image_size, channels=(32, 64, 128, 256), latent_dim=128, beta_kl=0.001, dims=2):
        super().__init__()
        if dims not in _OPS:
            raise ValueError(f"dims must be 2 or 3, got {dims!r}")
        size = tuple(int(s) for s in image_size)
        if len(size) != dims:
            raise ValueError(f"image_size {list(image_size)} must have {dims} entries for a {dims}D model")
        factor = 2 ** len(channels)
        if any(s % factor for s in size):
            raise ValueError(f"image_size {list(size)} must be divisible by 2**len(channels) = {factor}; "
                             "change preprocess.crop_pad/downsample or the model channels")
        self.dims = dims
        self.image_size = size
        self.latent_dim = int(latent_dim)
        self.beta_kl = float(beta_kl)
        chans = [1, *[int(c) for c in channels]]
        self.bottom = (chans[-1], *(s // factor for s in size))
        flat = 1
        for s in self.bottom:
            flat *= s
        self.encoder = nn.Sequential(*[_down(dims, a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.to_latent = nn.Linear(flat, 2 * self.latent_dim)
        self.from_latent = nn.Linear(self.latent_dim, flat)
        rev = chans[::-1]
        # mirrored: C_L -> C_{L-1} ... -> C_1, then C_1 -> C_1 at full size, then 1x1 conv to one channel
        self.decoder = nn.Sequential(*[_up(dims, a, b) for a, b in zip(rev[:-2], rev[1:-1])], _up(dims, rev[-2], rev[-2]))
        self.head = _OPS[dims][0](rev[-2], 1, 1)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != self.dims + 2 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.image_size:
            want = ", ".join(str(s) for s in self.image_size)
            raise ValueError(f"{type(self).__name__} expects inputs of shape (B, 1, {want}), got {tuple(x.shape)}")

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, *image_size) -> mu, logvar, each (B, latent_dim)."""
        self._check(x)
        mu, logvar = self.to_latent(self.encoder(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> (B, 1, *image_size)."""
        h = self.from_latent(z).view(z.shape[0], *self.bottom)
        return self.head(self.decoder(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded posterior mean, (B, 1, *image_size)."""
        return self.decode(self.posterior(x)[0])

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None,
             target: torch.Tensor | None = None) -> torch.Tensor:
        """l1(target, Dec(z)) + beta_kl * KL(q(z | batch) || N(0, I)), z ~ q(z | batch).

        Parameters
        ----------
        batch : Tensor (B, 1, *image_size)
            The (possibly erased) input.
        generator : torch.Generator, optional
            Draws the reparameterisation noise.
        target : Tensor of batch's shape, optional
            The un-erased input the output is compared with; default ``batch``.

        Returns
        -------
        Tensor (): mean l1 over voxels + beta_kl * (KL summed over latent units, mean over the batch).
        """
        target = batch if target is None else target
        mu, logvar = self.posterior(batch)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        rec = self.decode(mu + eps * (0.5 * logvar).exp())
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
        return F.l1_loss(rec, target) + self.beta_kl * kl

    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """(B, 1, *image_size) -> (samples, B, 1, *image_size).

        The first reconstruction decodes the posterior mean; further ones decode z ~ q(z|x) drawn with
        ``generator`` (for multi-sample scores).
        """
        mu, logvar = self.posterior(x)
        return posterior_reconstructions(self.decode, mu, logvar, samples, generator)


@register("vae2d_p81")
class VAE2D(SpatialVAE):
    """P8.1's 2D VAE on axial slices (B, 1, H, W); latent 128 (thesis)."""

    input_dims = 2

    def __init__(self, image_size=(64, 64), channels=(32, 64, 128, 256), latent_dim=128, beta_kl=0.001):
        super().__init__(image_size, channels, latent_dim, beta_kl, dims=2)


@register("vae3d")
class VAE3D(SpatialVAE):
    """P8.1's 3D VAE on whole volumes (B, 1, D, H, W); latent 512 (thesis)."""

    input_dims = 3

    def __init__(self, image_size=(64, 64, 64), channels=(32, 64, 128, 256), latent_dim=512, beta_kl=0.001):
        super().__init__(image_size, channels, latent_dim, beta_kl, dims=3)

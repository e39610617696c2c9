"""Baur-style 2D convolutional autoencoders with a dense bottleneck: ``ae`` and ``vae``.

Layout (Baur et al., MedIA 2021, "dense" AE/VAE; used as baselines throughout the thesis):
strided 5x5 convolutions (BatchNorm, LeakyReLU) halve the resolution per level, a fully connected
latent of ``latent_dim`` (128 in the thesis), a mirrored decoder of 5x5 transposed convolutions and a
final 1x1 convolution. The VAE adds a KL term with weight ``beta_kl`` (0.001 in the thesis).
Both are trained with an l1 reconstruction loss on healthy axial slices.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 5, stride=2, padding=2, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _DenseAutoencoder(nn.Module):
    """Shared encoder/decoder; subclasses define the bottleneck and the loss.

    Parameters
    ----------
    image_size : (int, int)
        Slice size (H, W); each must be divisible by ``2 ** len(channels)``.
    channels : sequence of int
        Feature maps per encoder level (mirrored in the decoder).
    latent_dim : int
        Size of the dense latent vector.
    latent_outputs : int
        1 for an AE (z), 2 for a VAE (mu, logvar).
    """

    input_dims = 2
    trainable = True
    produces = "recon"
    random_device = "model"

    def __init__(self, image_size=(64, 64), channels=(32, 64, 128, 128), latent_dim=128, latent_outputs=1):
        super().__init__()
        h, w = (int(s) for s in image_size)
        factor = 2 ** len(channels)
        if h % factor or w % factor:
            raise ValueError(
                f"image_size {image_size} must be divisible by 2**len(channels) = {factor}; "
                "change preprocess.crop_pad/downsample or the model channels"
            )
        self.image_size = (h, w)
        self.bottom = (int(channels[-1]), h // factor, w // factor)
        flat = self.bottom[0] * self.bottom[1] * self.bottom[2]
        chans = [1, *[int(c) for c in channels]]
        self.encoder = nn.Sequential(*[_down(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.to_latent = nn.Linear(flat, latent_dim * latent_outputs)
        self.from_latent = nn.Linear(latent_dim, flat)
        rev = chans[::-1]
        self.decoder = nn.Sequential(*[_up(a, b) for a, b in zip(rev[:-2], rev[1:-1])], _up(rev[-2], rev[-2]))
        self.head = nn.Conv2d(rev[-2], 1, 1)
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> (B, latent_dim * latent_outputs)."""
        return self.to_latent(self.encoder(x).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, 1, H, W)."""
        h = self.from_latent(z).view(z.shape[0], *self.bottom)
        return self.head(self.decoder(h))

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"expected slices of shape (B, 1, {self.image_size[0]}, {self.image_size[1]}), got {tuple(x.shape)}")


@register("ae")
class DenseAE(_DenseAutoencoder):
    """Deterministic autoencoder; ``reconstruct`` repeats the single reconstruction ``samples`` times."""

    def __init__(self, image_size=(64, 64), channels=(32, 64, 128, 128), latent_dim=128):
        super().__init__(image_size, channels, latent_dim, latent_outputs=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.decode(self.encode(x))

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean l1 between the slices (B, 1, H, W) and their reconstructions."""
        return F.l1_loss(self(batch), batch)

    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """(B, 1, H, W) -> (samples, B, 1, H, W); an AE is deterministic."""
        rec = self(x)
        return rec.unsqueeze(0).expand(samples, *rec.shape).clone()


@register("vae")
class DenseVAE(_DenseAutoencoder):
    """Variational autoencoder: l1 reconstruction + ``beta_kl`` * KL(q(z|x) || N(0, I)).

    At test time the first reconstruction decodes the posterior mean unless ``sample_at_test``;
    further samples (``samples > 1``) decode z ~ q(z|x) drawn with ``generator``.
    """

    def __init__(self, image_size=(64, 64), channels=(32, 64, 128, 128), latent_dim=128, beta_kl=0.001,
                 sample_at_test=False):
        super().__init__(image_size, channels, latent_dim, latent_outputs=2)
        self.beta_kl = float(beta_kl)
        self.sample_at_test = bool(sample_at_test)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) -> mu, logvar, each (B, latent_dim)."""
        self._check(x)
        mu, logvar = self.encode(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def _sample(self, mu, logvar, generator):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * (0.5 * logvar).exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.posterior(x)
        return self.decode(mu)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """l1 (mean over pixels) + beta_kl * KL (mean over the batch, summed over latent units)."""
        mu, logvar = self.posterior(batch)
        rec = self.decode(self._sample(mu, logvar, generator))
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1).mean()
        return F.l1_loss(rec, batch) + self.beta_kl * kl

    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """(B, 1, H, W) -> (samples, B, 1, H, W)."""
        mu, logvar = self.posterior(x)
        outs = []
        for s in range(samples):
            stochastic = self.sample_at_test or s > 0
            outs.append(self.decode(self._sample(mu, logvar, generator) if stochastic else mu))
        return torch.stack(outs)

"""RA, the reversed autoencoder (Bercea et al., "Generalizing unsupervised anomaly detection: towards unbiased
pathology screening", MIDL 2023): a Soft-Intro VAE (Daniel & Tamar, CVPR 2021) with a multi-scale
embedding loss, trained on healthy slices.

Thesis use: baseline of Tables 4.2-4.4 (P8.3, beta_rec = 16); score = l1 residual combined with an
upsampled pixel-wise LPIPS-style feature distance (:mod:`brainuad.scoring.perceptual`, scoring ``l1_lpips``).

Objective (one loop step = one encoder and one decoder update of Soft-IntroVAE, see
:mod:`brainuad.models.adversarial` for how both live in one loss), with ``s = 1 / (H W)``,
``rec`` = per-sample summed squared error, ``KL`` = per-sample KL to N(0, I):

* encoder, decoder frozen: ``s (beta_rec rec(x, D(z)) + beta_kl KL(x)) + 1/4 sum_{y in {D(z), D(z_p)}}
  exp(-2 s (beta_rec rec(y, D(E(y))) + beta_neg KL(y)))`` (the reconstructions and the prior samples
  ``D(z_p)``, z_p ~ N(0, I), are detached: the encoder pushes their ELBO down);
* decoder, encoder frozen: ``s (beta_rec rec(x, D(z)) + beta_kl (KL(D(z)) + KL(D(z_p))) / 2 + gamma_r
  beta_rec (rec(D(z), D(E(D(z)))) + rec(D(z_p), D(E(D(z_p))))) / 2) + beta_emb L_emb``;
* RA's multi-scale embedding loss ``L_emb = sum_l mean((phi_l(x) - phi_l(D(z)))^2)`` over the feature maps
  ``phi_l`` of every encoder level (frozen encoder): the reconstruction must look like the input to the
  encoder at every scale.

Validation loss (checkpoint selection): ``s (beta_rec rec(x, D(mu)) + beta_kl KL(x))``.

Deviations from the papers:

* Architecture: the Baur-style strided convolution encoder/decoder of this package (4x4 convolutions,
  BatchNorm, dense latent ``latent_dim``, sigmoid output) instead of Soft-IntroVAE's residual blocks;
  the thesis gives no RA architecture (method-spec §9).
* The embedding distance is the mean squared difference of the encoder's feature maps at every level,
  added to the decoder update with weight ``beta_emb`` (the thesis describes the loss only as "compare
  input/recon features at several encoder stages"; the weight is not published there).
* Encoder and decoder are updated simultaneously from the same state in each step (Soft-IntroVAE
  updates the decoder after the encoder in each iteration); one Adam optimiser with the loop's
  learning rate for both (Soft-IntroVAE uses two with equal rates).
* beta_kl = 1, beta_neg = 256, gamma_r = 1e-8 are Soft-IntroVAE's image defaults (not stated in the thesis).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from . import register
from .adversarial import StagedTraining, check_size, check_slices, conv_block, frozen
from .base import posterior_reconstructions


class _Encoder(nn.Module):
    """(B, 1, H, W) -> (mu, logvar) each (B, latent), plus the feature map of every level."""

    def __init__(self, size, channels, latent_dim):
        super().__init__()
        chans = [1, *channels]
        self.levels = nn.ModuleList(conv_block(a, b) for a, b in zip(chans[:-1], chans[1:]))
        h, w = size[0] // 2 ** len(channels), size[1] // 2 ** len(channels)
        self.fc = nn.Linear(channels[-1] * h * w, 2 * latent_dim)

    def forward(self, x):
        feats, h = [], x
        for level in self.levels:
            h = level(h)
            feats.append(h)
        mu, logvar = self.fc(h.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0), feats


class _Decoder(nn.Module):
    """z (B, latent) -> image (B, 1, H, W) in [0, 1]."""

    def __init__(self, size, channels, latent_dim):
        super().__init__()
        self.bottom = (channels[-1], size[0] // 2 ** len(channels), size[1] // 2 ** len(channels))
        self.fc = nn.Linear(latent_dim, math.prod(self.bottom))
        rev = list(channels[::-1])
        self.up = nn.Sequential(*[conv_block(a, b, down=False) for a, b in zip(rev, rev[1:] + [rev[-1]])])
        self.head = nn.Conv2d(rev[-1], 1, 3, padding=1)

    def forward(self, z):
        h = torch.relu(self.fc(z)).view(z.shape[0], *self.bottom)
        return torch.sigmoid(self.head(self.up(h)))


def _rec(x, y):
    """Per-sample summed squared error (B,)."""
    return (x - y).pow(2).flatten(1).sum(1)


def _kl(mu, logvar):
    """Per-sample KL(N(mu, exp(logvar)) || N(0, I)) (B,)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)


def _sample(mu, logvar, generator):
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * (0.5 * logvar).exp()


@register("ra")
class ReversedAutoencoder(StagedTraining):
    """RA: Soft-Intro VAE + multi-scale embedding loss on axial slices (module docstring: method, deviations).

    Parameters
    ----------
    image_size : (int, int)
        Slice size (H, W), each divisible by ``2 ** len(channels)``.
    channels : sequence of int
        Feature maps per encoder level (mirrored in the decoder).
    latent_dim : int
        Size of the dense latent (128 as the thesis' VAEs).
    beta_rec, beta_kl, beta_neg, gamma_r : float
        Soft-IntroVAE weights (thesis: beta_rec = 16).
    beta_emb : float
        Weight of RA's multi-scale embedding loss.
    """

    input_dims = 2
    trainable = True
    produces = "recon"
    random_device = "model"

    def __init__(self, image_size=(64, 64), channels=(32, 64, 128, 256), latent_dim=128, beta_rec=16.0,
                 beta_kl=1.0, beta_neg=256.0, gamma_r=1e-8, beta_emb=1.0):
        super().__init__()
        channels = [int(c) for c in channels]
        self.image_size = check_size(image_size, len(channels))
        self.latent_dim = int(latent_dim)
        self.beta_rec, self.beta_kl, self.beta_neg = float(beta_rec), float(beta_kl), float(beta_neg)
        self.gamma_r, self.beta_emb = float(gamma_r), float(beta_emb)
        self.encoder = _Encoder(self.image_size, channels, self.latent_dim)
        self.decoder = _Decoder(self.image_size, channels, self.latent_dim)
        self._init_counter()

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) -> mu, logvar, each (B, latent_dim)."""
        check_slices(x, self.image_size)
        mu, logvar, _ = self.encoder(x)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B, 1, H, W)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior-mean reconstruction (B, 1, H, W)."""
        return self.decode(self.posterior(x)[0])

    # --- training -----------------------------------------------------------------------------------------
    def elbo_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Validation criterion s (beta_rec rec(x, D(mu)) + beta_kl KL), mean over the batch."""
        mu, logvar = self.posterior(x)
        scale = 1.0 / (x.shape[-2] * x.shape[-1])
        return (scale * (self.beta_rec * _rec(x, self.decode(mu)) + self.beta_kl * _kl(mu, logvar))).mean()

    def soft_intro_losses(self, x: torch.Tensor, generator=None) -> dict[str, torch.Tensor]:
        """The encoder loss, the decoder loss and their parts (each a scalar) of one Soft-IntroVAE step."""
        scale = 1.0 / (x.shape[-2] * x.shape[-1])
        mu, logvar, feats_x = self.encoder(x)
        z = _sample(mu, logvar, generator)
        z_p = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)

        # encoder update (decoder frozen)
        rec_e = frozen(self.decoder, z)
        fake_e = frozen(self.decoder, z_p)
        rec_real = _rec(x, rec_e)
        kl_real = _kl(mu, logvar)
        exp_elbo = []
        for y in (rec_e.detach(), fake_e.detach()):
            mu_y, lv_y, _ = self.encoder(y)
            ry = frozen(self.decoder, _sample(mu_y, lv_y, generator))
            exp_elbo.append(torch.exp(-2 * scale * (self.beta_rec * _rec(y, ry) + self.beta_neg * _kl(mu_y, lv_y))).mean())
        loss_e = (scale * (self.beta_rec * rec_real + self.beta_kl * kl_real)).mean() + 0.25 * sum(exp_elbo)

        # decoder update (encoder frozen)
        rec_d = self.decoder(z.detach())
        fake_d = self.decoder(z_p)
        mu_r, lv_r, feats_r = frozen(self.encoder, rec_d)
        mu_f, lv_f, _ = frozen(self.encoder, fake_d)
        rr = self.decoder(_sample(mu_r, lv_r, generator).detach())
        rf = self.decoder(_sample(mu_f, lv_f, generator).detach())
        rec_real_d = _rec(x, rec_d)
        loss_d = (scale * (self.beta_rec * rec_real_d + self.beta_kl * 0.5 * (_kl(mu_r, lv_r) + _kl(mu_f, lv_f))
                           + self.gamma_r * 0.5 * self.beta_rec * (_rec(rec_d.detach(), rr) + _rec(fake_d.detach(), rf)))).mean()
        emb = sum((fx.detach() - fr).pow(2).mean() for fx, fr in zip(feats_x, feats_r))
        loss_d = loss_d + self.beta_emb * emb
        return {"encoder": loss_e, "decoder": loss_d, "rec": (scale * rec_real_d).mean(), "kl": kl_real.mean(),
                "embedding": emb}

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encoder loss + decoder loss of one Soft-IntroVAE step (each reaches only its own network);
        validation calls return :meth:`elbo_loss`."""
        check_slices(batch, self.image_size)
        if not self.is_training_call():
            return self.elbo_loss(batch)
        self.next_step()
        parts = self.soft_intro_losses(batch, generator)
        return parts["encoder"] + parts["decoder"]

    # --- inference ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """(B, 1, H, W) -> (samples, B, 1, H, W): the posterior mean, then posterior samples."""
        mu, logvar = self.posterior(x)
        return posterior_reconstructions(self.decode, mu, logvar, samples, generator)

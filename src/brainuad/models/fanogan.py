"""f-AnoGAN (Schlegl et al., "f-AnoGAN: Fast unsupervised anomaly detection with generative adversarial
networks", Medical Image Analysis 54, 2019): a Wasserstein GAN with gradient penalty trained on healthy
slices, then an encoder trained with the generator and critic fixed (the paper's izi_f architecture).

Thesis use: baseline of P8.2-Tab1 (latent 128, learning rate 1e-4, l1 residual scoring).

Training (both stages inside :meth:`FAnoGAN.loss`, see :mod:`brainuad.models.adversarial`):

1. **WGAN-GP** for ``gan_steps`` loop steps: ``n_critic`` critic updates
   ``L_C = C(G(z)) - C(x) + lambda_gp * GP`` then one generator update ``L_G = -C(G(z))``
   (Gulrajani et al. 2017; n_critic 5, lambda 10 as in the paper's code). z ~ U[-1, 1]^latent_dim.
2. **izi_f encoder** for the remaining steps: ``L_izi_f = ||x - G(E(x))||^2 / n + kappa * ||f(x) -
   f(G(E(x)))||^2 / n_d`` with ``f`` the critic's last feature map, G and C frozen (kappa = 1).

Scores: :meth:`reconstruct` returns G(E(x)) (for the l1 residual the thesis uses); :meth:`anomaly_map` is
the paper's score per pixel, ``(x - G(E(x)))^2 + kappa * up(mean_c (f(x) - f(G(E(x))))^2)``, whose image
mean is the paper's A(x) = A_R(x) + kappa A_D(x) up to the upsampling. Set the model attribute
``produces`` to ``"map"`` (``reconstruct.attributes: {produces: map}``) to store it instead of
reconstructions.

Deviations from the paper (stated because a reviewer will compare):

* Architecture: DCGAN-style 4x4 stride-2 convolutions with ``channels`` per level (BatchNorm in the
  generator, a per-sample LayerNorm in the critic and encoder) instead of the paper's residual networks;
  the encoder mirrors the critic's layout (as in the paper) with a tanh output.
* Images stay in [0, 1] (sigmoid generator output) instead of [-1, 1] (tanh).
* One optimiser for all networks with the loop's learning rate and betas (the paper: Adam 1e-4,
  beta = (0, 0.9) for every stage; set ``train.betas: [0.0, 0.9]``); the encoder stage reuses it with
  the same learning rate.
* Stage lengths are loop steps (``gan_steps``, the rest of ``max_steps`` for the encoder) instead of
  epochs; during the GAN stage the validation loss is +inf, so the best checkpoint is always chosen in the
  encoder stage (by the healthy validation izi_f loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .adversarial import StagedTraining, check_size, check_slices, conv_block, frozen, gradient_penalty


class _Generator(nn.Module):
    """z (B, latent) -> image (B, 1, H, W) in [0, 1]."""

    def __init__(self, size, channels, latent_dim):
        super().__init__()
        self.bottom = (channels[-1], size[0] // 2 ** len(channels), size[1] // 2 ** len(channels))
        self.fc = nn.Sequential(nn.Linear(latent_dim, math.prod(self.bottom), bias=False),
                                nn.BatchNorm1d(math.prod(self.bottom)), nn.ReLU(inplace=True))
        rev = list(channels[::-1])
        self.up = nn.Sequential(*[conv_block(a, b, down=False) for a, b in zip(rev, rev[1:] + [rev[-1]])])
        self.head = nn.Conv2d(rev[-1], 1, 3, padding=1)

    def forward(self, z):
        return torch.sigmoid(self.head(self.up(self.fc(z).view(z.shape[0], *self.bottom))))


class _ConvNet(nn.Module):
    """Critic / encoder layout: image -> feature map (B, C, h, w) -> linear head (B, outputs)."""

    def __init__(self, size, channels, outputs):
        super().__init__()
        chans = [1, *channels]
        self.body = nn.Sequential(*[conv_block(a, b, norm="layer") for a, b in zip(chans[:-1], chans[1:])])
        h, w = size[0] // 2 ** len(channels), size[1] // 2 ** len(channels)
        self.head = nn.Linear(channels[-1] * h * w, outputs)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


@register("fanogan")
class FAnoGAN(StagedTraining):
    """f-AnoGAN on axial slices (see the module docstring for the method and every deviation).

    Parameters
    ----------
    image_size : (int, int)
        Slice size (H, W), each divisible by ``2 ** len(channels)``.
    channels : sequence of int
        Feature maps per level of the generator (mirrored), critic and encoder.
    latent_dim : int
        Size of z (thesis / paper: 128).
    gan_steps : int
        Loop steps of the WGAN-GP stage; the remaining steps of ``train.max_steps`` train the encoder.
    n_critic : int
        Critic updates per generator update (paper: 5).
    lambda_gp : float
        Gradient-penalty weight (paper: 10).
    kappa : float
        Weight of the critic-feature residual in the encoder loss and the anomaly score (paper: 1).
    """

    input_dims = 2
    trainable = True
    produces = "recon"  # an instance may switch to "map" (reconstruct.attributes)
    random_device = "model"

    def __init__(self, image_size=(64, 64), channels=(64, 128, 256, 512), latent_dim=128, gan_steps=1000,
                 n_critic=5, lambda_gp=10.0, kappa=1.0):
        super().__init__()
        channels = [int(c) for c in channels]
        self.image_size = check_size(image_size, len(channels))
        self.latent_dim, self.gan_steps, self.n_critic = int(latent_dim), int(gan_steps), int(n_critic)
        self.lambda_gp, self.kappa = float(lambda_gp), float(kappa)
        self.generator = _Generator(self.image_size, channels, self.latent_dim)
        self.critic = _ConvNet(self.image_size, channels, 1)
        self.encoder = _ConvNet(self.image_size, channels, self.latent_dim)
        self._init_counter()

    # --- networks -------------------------------------------------------------------------------------------
    def sample_latent(self, n: int, generator=None, device=None) -> torch.Tensor:
        """z ~ U[-1, 1]^(n, latent_dim)."""
        device = device or self.train_step.device
        return torch.rand((n, self.latent_dim), generator=generator, device=device) * 2 - 1

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) -> z (B, latent_dim) in (-1, 1)."""
        return torch.tanh(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """G(E(x)): (B, 1, H, W) -> (B, 1, H, W)."""
        check_slices(x, self.image_size)
        return self.generator(self.encode(x))

    # --- training -----------------------------------------------------------------------------------------
    def stage(self) -> str:
        """"gan" or "encoder": the stage of the next training step."""
        return "gan" if int(self.train_step) < self.gan_steps else "encoder"

    def critic_loss(self, real, generator=None):
        """WGAN-GP critic loss; the generator is not updated (its sample is detached)."""
        with torch.no_grad():
            fake = self.generator(self.sample_latent(real.shape[0], generator, real.device))
        gp = gradient_penalty(self.critic, real, fake, generator)
        return self.critic(fake).mean() - self.critic(real).mean() + self.lambda_gp * gp

    def generator_loss(self, n: int, generator=None, device=None):
        """-C(G(z)) with the critic frozen."""
        return -frozen(self.critic, self.generator(self.sample_latent(n, generator, device))).mean()

    def izi_f_loss(self, x):
        """izi_f loss of the encoder; the generator and critic are frozen."""
        rec = frozen(self.generator, self.encode(x))
        feats = frozen(self.critic.body, torch.cat([x, rec]))
        fx, fr = feats.chunk(2)
        return F.mse_loss(rec, x) + self.kappa * F.mse_loss(fr, fx)

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The loss of this step's update (critic, generator or encoder); see the module docstring.

        Validation calls (eval mode / no autograd) return the izi_f loss in the encoder stage and +inf in the
        GAN stage (a GAN-stage checkpoint has no trained encoder and must never be selected).
        """
        check_slices(batch, self.image_size)
        if not self.is_training_call():
            if self.stage() == "gan":
                return torch.full((), math.inf, device=batch.device)
            return self.izi_f_loss(batch)
        step = self.next_step()
        if step < self.gan_steps:
            if step % (self.n_critic + 1) < self.n_critic:
                return self.critic_loss(batch, generator)
            return self.generator_loss(batch.shape[0], generator, batch.device)
        # encoder stage: G's BatchNorm uses its running statistics (G is fixed)
        self.generator.eval()
        try:
            return self.izi_f_loss(batch)
        finally:
            self.generator.train()

    # --- inference ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """G(E(x)) repeated ``samples`` times: (samples, B, 1, H, W) (the mapping is deterministic)."""
        rec = self(x)
        return rec.unsqueeze(0).expand(samples, *rec.shape).clone()

    @torch.no_grad()
    def anomaly_map(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The paper's score per pixel, (B, 1, H, W): residual^2 + kappa * upsampled critic-feature residual^2,
        zero outside ``mask``."""
        rec = self(x)
        fx, fr = self.critic.features(torch.cat([x, rec])).chunk(2)
        feat = F.interpolate((fx - fr).pow(2).mean(1, keepdim=True), size=x.shape[-2:], mode="bilinear",
                             align_corners=False)
        out = (x - rec).pow(2) + self.kappa * feat
        return out if mask is None else out * mask.to(out.dtype)

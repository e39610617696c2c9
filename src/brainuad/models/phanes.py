"""PHANES (Bercea et al., "Reversing the abnormal: pseudo-healthy generative networks for anomaly detection",
MICCAI 2023): RA's coarse pseudo-healthy reconstruction, binary masks of the poorly reconstructed regions,
and a GAN that inpaints the masked regions of the input conditioned on the RA reconstruction.

Thesis use: baseline of Tables 4.2-4.4 (P8.3): beta_rec = 16, masking threshold 0.15 (training) and 0.10
(test); score = l1 combined with the upsampled pixel-wise LPIPS-style distance (scoring ``l1_lpips``).

Training (two stages inside :meth:`PHANES.loss`, see :mod:`brainuad.models.adversarial`):

1. the RA stage (:class:`~brainuad.models.reversed_autoencoder.ReversedAutoencoder`) for ``ra_steps``
   loop steps;
2. the inpainting stage, RA frozen: mask ``M = dilate(|x - RA(x)| > mask_train)``, united with a random box
   with probability ``random_mask_p`` (healthy slices have few poorly reconstructed pixels, so the inpainter
   also learns from boxes); the generator sees ``[x (1 - M), RA(x), M]`` and predicts the image,
   ``x_in = x (1 - M) + G(.) M``; generator loss ``|G(.) - x|_1 + adv_weight * (D(x_in) - 1)^2``, PatchGAN
   discriminator loss ``(D(x) - 1)^2 + D(x_in)^2`` (least squares, as AOT-GAN), both updated in each step.

At test time the mask uses ``mask_test`` and the brain mask; the reconstruction is ``x_in``.

Deviations from the paper:

* The masks come from the l1 residual of the RA reconstruction only (the paper also weighs it with an
  LPIPS saliency map, which would need pre-trained weights at training time); dilation by a 3x3
  maximum (``mask_dilate`` iterations).
* The inpainting network is a small encoder / dilated-residual / decoder network (AOT-GAN's layout with
  plain residual blocks at dilations 1, 2, 4, 8) and a GroupNorm PatchGAN discriminator (no spectral
  norm); AOT-GAN's perceptual and style losses (VGG features) are left out, so nothing pre-trained is
  needed for training.
* Random-box masks during inpainting training (see above) are this implementation's choice.
* Stage lengths are loop steps; the validation loss is +inf during the RA stage (a checkpoint without a
  trained inpainter is never selected) and the inpainter's l1 afterwards; RA's deviations apply.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import register
from .adversarial import conv_block, frozen
from .reversed_autoencoder import ReversedAutoencoder


class _ResBlock(nn.Module):
    def __init__(self, ch, dilation):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=dilation, dilation=dilation), nn.GroupNorm(1, ch),
                                  nn.ReLU(inplace=True), nn.Conv2d(ch, ch, 3, padding=1), nn.GroupNorm(1, ch))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class _Inpainter(nn.Module):
    """[masked image, RA reconstruction, mask] (B, 3, H, W) -> image (B, 1, H, W) in [0, 1]."""

    def __init__(self, channels):
        super().__init__()
        c1, c2 = channels
        self.inp = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), nn.ReLU(inplace=True))
        self.down = nn.Sequential(conv_block(c1, c2, norm="layer"))
        self.mid = nn.Sequential(*[_ResBlock(c2, d) for d in (1, 2, 4, 8)])
        self.up = nn.Sequential(conv_block(c2, c1, norm="layer", down=False))
        self.head = nn.Conv2d(2 * c1, 1, 3, padding=1)

    def forward(self, x):
        h0 = self.inp(x)
        h = self.up(self.mid(self.down(h0)))
        return torch.sigmoid(self.head(torch.cat([h, h0], 1)))


class _PatchDiscriminator(nn.Module):
    """(B, 1, H, W) -> patch realness (B, 1, H/8, W/8)."""

    def __init__(self, channels):
        super().__init__()
        c1, c2 = channels
        self.net = nn.Sequential(nn.Conv2d(1, c1, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                 conv_block(c1, c2, norm="layer"), conv_block(c2, 2 * c2, norm="layer"),
                                 nn.Conv2d(2 * c2, 1, 3, padding=1))

    def forward(self, x):
        return self.net(x)


@register("phanes")
class PHANES(ReversedAutoencoder):
    """PHANES on axial slices (module docstring: method, deviations).

    Parameters
    ----------
    image_size, channels, latent_dim, beta_rec, beta_kl, beta_neg, gamma_r, beta_emb
        Of the RA part (:class:`~brainuad.models.reversed_autoencoder.ReversedAutoencoder`).
    ra_steps : int
        Loop steps of the RA stage; the rest of ``train.max_steps`` trains the inpainting GAN.
    mask_train, mask_test : float
        Residual thresholds of the masks (thesis: 0.15 and 0.10).
    mask_dilate : int
        3x3 dilations of the mask.
    random_mask_p : float
        Probability of adding a random box to a training mask.
    inpaint_channels : (int, int)
        Widths of the inpainting generator and discriminator.
    adv_weight : float
        Weight of the adversarial term of the inpainting generator.
    """

    def __init__(self, image_size=(64, 64), channels=(32, 64, 128, 256), latent_dim=128, beta_rec=16.0,
                 beta_kl=1.0, beta_neg=256.0, gamma_r=1e-8, beta_emb=1.0, ra_steps=1000, mask_train=0.15,
                 mask_test=0.10, mask_dilate=1, random_mask_p=0.5, inpaint_channels=(32, 64), adv_weight=0.01):
        super().__init__(image_size, channels, latent_dim, beta_rec, beta_kl, beta_neg, gamma_r, beta_emb)
        self.ra_steps, self.mask_dilate = int(ra_steps), int(mask_dilate)
        self.mask_train, self.mask_test = float(mask_train), float(mask_test)
        self.random_mask_p, self.adv_weight = float(random_mask_p), float(adv_weight)
        ch = [int(c) for c in inpaint_channels]
        if len(ch) != 2:
            raise ValueError(f"inpaint_channels must be two widths, got {inpaint_channels!r}")
        self.inpainter = _Inpainter(ch)
        self.discriminator = _PatchDiscriminator(ch)

    def stage(self) -> str:
        """"ra" or "inpaint": the stage of the next training step."""
        return "ra" if int(self.train_step) < self.ra_steps else "inpaint"

    def residual_mask(self, x: torch.Tensor, ra: torch.Tensor, threshold: float,
                      brain: torch.Tensor | None = None) -> torch.Tensor:
        """Binary float mask (B, 1, H, W): |x - ra| > threshold (inside ``brain``), dilated."""
        m = ((x - ra).abs() > threshold).to(x.dtype)
        if brain is not None:
            m = m * brain.to(x.dtype)
        for _ in range(self.mask_dilate):
            m = F.max_pool2d(m, 3, stride=1, padding=1)
        return m

    def random_boxes(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """(B, 1, H, W) masks holding, with probability random_mask_p, one box of 1/8 to 1/2 of each side."""
        b, _, h, w = x.shape
        u = torch.rand((b, 5), generator=generator, device=x.device)
        bh = (h * (0.125 + 0.375 * u[:, 0])).long().clamp(min=1)
        bw = (w * (0.125 + 0.375 * u[:, 1])).long().clamp(min=1)
        y0 = ((h - bh) * u[:, 2]).long()
        x0 = ((w - bw) * u[:, 3]).long()
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        box = ((rows >= y0.view(b, 1, 1)) & (rows < (y0 + bh).view(b, 1, 1)) & (cols >= x0.view(b, 1, 1))
               & (cols < (x0 + bw).view(b, 1, 1)) & (u[:, 4] < self.random_mask_p).view(b, 1, 1))
        return box.unsqueeze(1).to(x.dtype)

    def inpaint(self, x, ra, mask, inpainter=None):
        """(prediction, composite) of the inpainting generator; ``inpainter`` defaults to the model's."""
        net = inpainter or self.inpainter
        pred = net(torch.cat([x * (1 - mask), ra, mask], 1))
        return pred, x * (1 - mask) + pred * mask

    def inpaint_losses(self, x, generator=None, *, random_boxes=True) -> dict[str, torch.Tensor]:
        """Generator and discriminator losses of one inpainting step (RA frozen, in eval mode)."""
        with torch.no_grad():
            was = self.encoder.training
            self.encoder.eval(), self.decoder.eval()
            ra = self(x)
            self.encoder.train(was), self.decoder.train(was)
        mask = self.residual_mask(x, ra, self.mask_train)
        if random_boxes:
            mask = torch.maximum(mask, self.random_boxes(x, generator))
        pred, comp = self.inpaint(x, ra, mask)
        l1 = (pred - x).abs().mean()
        adv_g = (frozen(self.discriminator, comp) - 1).pow(2).mean()
        d_loss = ((self.discriminator(x) - 1).pow(2).mean() + self.discriminator(comp.detach()).pow(2).mean())
        return {"generator": l1 + self.adv_weight * adv_g, "discriminator": d_loss, "l1": l1}

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """RA loss in the RA stage, inpainting generator + discriminator loss afterwards; validation calls
        return +inf in the RA stage and the inpainter's l1 (threshold masks only) afterwards."""
        if not self.is_training_call():
            if self.stage() == "ra":
                return torch.full((), math.inf, device=batch.device)
            return self.inpaint_losses(batch, random_boxes=False)["l1"]
        if self.stage() == "ra":
            return super().loss(batch, generator)
        self.next_step()
        parts = self.inpaint_losses(batch, generator)
        return parts["generator"] + parts["discriminator"]

    @torch.no_grad()
    def reconstruct(self, x, mask=None, *, noise_level=None, samples=1, generator=None) -> torch.Tensor:
        """Pseudo-healthy images (samples, B, 1, H, W): RA's posterior mean, regions with residual >
        ``mask_test`` (inside the brain ``mask``) inpainted; deterministic, repeated ``samples`` times."""
        ra = self(x)
        m = self.residual_mask(x, ra, self.mask_test, mask)
        _, comp = self.inpaint(x, ra, m)
        return comp.unsqueeze(0).expand(samples, *comp.shape).clone()

"""Denoising diffusion models for reconstruction-based UAD: ``anoddpm``, ``pddpm`` and ``cddpm``.

All three share the DDPM of method-spec §3.1 and the x0-predicting Unet of §3.2
(:class:`brainuad.models.unet.DenoisingUnet`):

* forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with T = 1000 and a linear
  (1e-4 -> 2e-2, P8.2; the default) or cosine (Nichol & Dhariwal, s = 0.008; the public code's
  default, method-spec §9 C31) beta schedule;
* eps = structured simplex noise by default (:mod:`brainuad.noise`; octaves 6, persistence 0.8,
  frequency 64 px, not normalised — the public code's values), or Gaussian;
* the Unet predicts x0 directly, l1 loss;
* test-time reconstruction is ONE network call from x_{t_test} (no sampling chain);
  ``noise_level`` = t_test or a list of t_test values whose single-step reconstructions are averaged
  (ENS, [250, 500, 750]).

Conventions (documented choices)
--------------------------------
* **Timesteps.** The thesis counts t = 1..T. Internally the schedule arrays and the network use the
  0-based index k = t - 1 (the public code's ``randint(0, 1000)`` and ``t = test_timesteps - 1``):
  training draws k uniformly from {0, ..., T-1}; ``t_test = 500`` means k = 499.
* **Intensity scale.** Inputs in [0, 1] are mapped to [-1, 1] before noising and the prediction is
  mapped back (``scale_inputs=True``, as the public code's ``normalize_to_neg_one_to_one``); the loss
  is computed on the [-1, 1] scale. Reconstructions are not clipped.
* **Where the noise goes.** Over the whole image (AnoDDPM, cDDPM) or the whole patch (pDDPM),
  background included — the brain mask passed to ``reconstruct`` is not used, as in the public code
  (the noise is generated for the full slice, method-spec App. B.1).
* **One noise field per batch.** With ``noise_shared=True`` (default, the public code's behaviour)
  one field is drawn per call and repeated over the batch, i.e. over all slices of a volume at test
  time; ``False`` draws an independent field per slice. Every t_test of an ensemble and every
  reconstruction sample draws a fresh field; pDDPM uses the same field for all patch positions.
* All randomness (t, noise, patch positions) comes from the ``generator`` argument, so a seeded
  generator makes ``loss`` and ``reconstruct`` deterministic. Random numbers are drawn on the
  generator's device; pass a generator on the input's device (as :func:`brainuad.training.loop.fit`
  and :func:`brainuad.inference.run_model` do).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..noise import KINDS as NOISE_KINDS
from ..noise import make_noise
from . import register
from .unet import DenoisingUnet

# --------------------------------------------------------------------------------------------------
# schedule


def linear_betas(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """Linear beta schedule (Ho et al. 2020; P8.2), rescaled by 1000 / T as in the public code.

    Returns
    -------
    Tensor (T,) float64; ``[beta_start, ..., beta_end]`` for T = 1000.
    """
    scale = 1000.0 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, s: float = 0.008) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021) as in the public code (lucidrains variant).

    ``abar(u) = cos((u / T + s) / (1 + s) * pi / 2)^2 / abar(0)``, ``beta_t = 1 - abar(t+1) / abar(t)``,
    clipped to [0, 0.999].

    Returns
    -------
    Tensor (T,) float64
    """
    u = torch.linspace(0, T, T + 1, dtype=torch.float64)
    abar = torch.cos(((u / T) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return (1 - abar[1:] / abar[:-1]).clamp(0, 0.999)


class DiffusionSchedule(nn.Module):
    """Beta schedule and the closed-form forward process.

    Parameters
    ----------
    kind : {"linear", "cosine"}
    T : int
        Number of diffusion steps.

    Attributes
    ----------
    betas, alphas_cumprod, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod : Tensor (T,) float32
        Non-persistent buffers (not in the state dict), indexed by the 0-based step k.
    """

    def __init__(self, kind: str = "linear", T: int = 1000):
        super().__init__()
        if kind == "linear":
            betas = linear_betas(T)
        elif kind == "cosine":
            betas = cosine_betas(T)
        else:
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {kind!r}")
        self.kind, self.T = kind, int(T)
        abar = torch.cumprod(1.0 - betas, dim=0)
        for name, value in (("betas", betas), ("alphas_cumprod", abar), ("sqrt_alphas_cumprod", abar.sqrt()),
                            ("sqrt_one_minus_alphas_cumprod", (1.0 - abar).sqrt())):
            self.register_buffer(name, value.float(), persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        Parameters
        ----------
        x0 : Tensor (B, C, ...)
        t : Tensor (B,) int64
            0-based step indices.
        noise : Tensor of x0's shape

        Returns
        -------
        Tensor of x0's shape
        """
        view = (-1,) + (1,) * (x0.dim() - 1)
        a = self.sqrt_alphas_cumprod[t].view(view).to(x0.dtype)
        b = self.sqrt_one_minus_alphas_cumprod[t].view(view).to(x0.dtype)
        return a * x0 + b * noise


# --------------------------------------------------------------------------------------------------
# patches (pDDPM)


def grid_starts(image_size: Sequence[int], patch_size: int, stride: int) -> torch.Tensor:
    """Top-left corners of the sliding-window grid that covers the image.

    Starts are ``0, stride, 2 * stride, ...`` per axis, plus ``size - patch_size`` when the last window
    would not reach the border (MONAI ``dense_patch_slices``); the grid is the product of both axes
    (2 x 2 for 48 px patches on 96 x 96, the public code's grid).

    Returns
    -------
    Tensor (K, 2) int64 of (row, col) starts.
    """
    from monai.data.utils import dense_patch_slices

    slices = dense_patch_slices(tuple(int(s) for s in image_size), (patch_size, patch_size), (stride, stride))
    return torch.tensor([[int(sl[0].start), int(sl[1].start)] for sl in slices], dtype=torch.long)


def patch_masks(starts: torch.Tensor, patch_size: int, image_size: Sequence[int]) -> torch.Tensor:
    """Binary masks of square patches.

    Parameters
    ----------
    starts : Tensor (K, 2) int64
        (row, col) top-left corners.
    patch_size : int
    image_size : (H, W)

    Returns
    -------
    Tensor (K, 1, H, W) float32 on starts' device, 1 inside the patch.
    """
    h, w = (int(s) for s in image_size)
    rows = torch.arange(h, device=starts.device)
    cols = torch.arange(w, device=starts.device)
    my = (rows[None] >= starts[:, :1]) & (rows[None] < starts[:, :1] + patch_size)  # (K, H)
    mx = (cols[None] >= starts[:, 1:]) & (cols[None] < starts[:, 1:] + patch_size)  # (K, W)
    return (my[:, :, None] & mx[:, None, :]).unsqueeze(1).float()


def stitch_patches(predictions: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Stitch per-patch predictions into one image, averaging where patches overlap.

    Parameters
    ----------
    predictions : Tensor (K, B, C, H, W)
        Full-size prediction for each of the K patch positions; only the part inside patch k is used.
    masks : Tensor (K, 1, H, W)
        Patch masks (1 inside).

    Returns
    -------
    Tensor (B, C, H, W): ``sum_k M_k P_k / sum_k M_k``; 0 where no patch covers a pixel.
    """
    m = masks.unsqueeze(1).to(predictions.dtype)  # (K, 1, 1, H, W)
    total = (predictions * m).sum(dim=0)
    count = m.sum(dim=0)
    return total / count.clamp_min(1.0)


# --------------------------------------------------------------------------------------------------
# models


def _as_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


class _DiffusionModel(nn.Module):
    """Shared DDPM machinery: schedule, noise, Unet, single-step reconstruction, ENS, samples.

    Parameters
    ----------
    image_size : (int, int)
        Slice size (H, W); divisible by ``2 ** (len(channels) - 1)``. Thesis 96 x 96.
    channels : sequence of int
        Unet feature maps per level (thesis [128, 256, 256]).
    res_blocks : int
        Residual blocks per Unet level (thesis 3).
    schedule : {"linear", "cosine"}
        Beta schedule (thesis linear; public code cosine).
    T : int
        Diffusion steps (1000).
    noise : {"simplex", "gaussian", "simplex3d"}
        Noise kind (``simplex3d`` on slices = a random planar cut through 3D simplex noise).
    noise_octaves, noise_persistence, noise_frequency : int, float, float
        Fractal simplex parameters (6, 0.8, 64 px).
    noise_normalise : bool
        Standardise every noise field to mean 0, std 1 (False = reference code).
    noise_shared : bool
        One noise field per call, repeated over the batch (True = reference code).
    t_test : int
        Default test noise level, thesis convention 1..T (500).
    attention : bool
        Self-attention in the Unet middle block.
    dropout : float
        Unet dropout.
    scale_inputs : bool
        Map [0, 1] to [-1, 1] for the diffusion and back.
    cond_dim : int
        Context width for the Unet (set by the cDDPM).
    """

    input_dims = 2
    trainable = True
    produces = "recon"

    def __init__(self, image_size=(64, 64), channels=(128, 256, 256), res_blocks=3, schedule="linear", T=1000,
                 noise="simplex", noise_octaves=6, noise_persistence=0.8, noise_frequency=64.0,
                 noise_normalise=False, noise_shared=True, t_test=500, attention=False, dropout=0.0,
                 scale_inputs=True, cond_dim=0):
        super().__init__()
        self.image_size = _as_pair(image_size)
        if noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {noise!r}")
        self.unet = DenoisingUnet(channels, res_blocks, cond_dim=cond_dim, attention=attention, dropout=dropout)
        f = self.unet.downsample_factor
        if self.image_size[0] % f or self.image_size[1] % f:
            raise ValueError(f"image_size {tuple(self.image_size)} must be divisible by 2**(len(channels)-1) = {f}; "
                             "change preprocess.crop_pad/downsample or the model channels")
        self.schedule = DiffusionSchedule(schedule, int(T))
        self.T = int(T)
        self.noise_kind = noise
        self.noise_kwargs = {"octaves": int(noise_octaves), "persistence": float(noise_persistence),
                             "frequency": float(noise_frequency), "normalise": bool(noise_normalise)}
        self.noise_shared = bool(noise_shared)
        self.scale_inputs = bool(scale_inputs)
        self.t_test = self._levels(t_test)

    # ---- helpers -------------------------------------------------------------------------------

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"expected slices of shape (B, 1, {self.image_size[0]}, {self.image_size[1]}), "
                             f"got {tuple(x.shape)}")

    def _levels(self, noise_level) -> list[int]:
        """Thesis noise level(s) t in 1..T -> list of 0-based step indices k = t - 1."""
        if isinstance(noise_level, str):
            raise ValueError(f"noise_level must be an int or a list of ints, got the string {noise_level!r}")
        scalar = isinstance(noise_level, numbers.Number) or (torch.is_tensor(noise_level) and noise_level.dim() == 0)
        levels = [noise_level] if scalar else list(noise_level)
        if not levels:
            raise ValueError("noise_level must be an int or a non-empty list of ints")
        out = []
        for t in levels:
            t = int(t)
            if not 1 <= t <= self.T:
                raise ValueError(f"noise level t_test={t} must lie in 1..T={self.T}")
            out.append(t - 1)
        return out

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> model scale ([-1, 1] when ``scale_inputs``)."""
        return x * 2.0 - 1.0 if self.scale_inputs else x

    def unscale(self, y: torch.Tensor) -> torch.Tensor:
        """Model scale -> [0, 1] scale (inverse of :meth:`scale`)."""
        return (y + 1.0) * 0.5 if self.scale_inputs else y

    def draw_noise(self, shape: Sequence[int], generator: torch.Generator | None, device, dtype) -> torch.Tensor:
        """Noise eps of ``shape`` (B, 1, H, W): one shared field or one per sample (``noise_shared``)."""
        shape = tuple(shape)
        if self.noise_shared:
            eps = make_noise(self.noise_kind, (1, *shape[1:]), generator, device, dtype, **self.noise_kwargs)
            return eps.expand(shape)
        return make_noise(self.noise_kind, shape, generator, device, dtype, **self.noise_kwargs)

    def draw_timesteps(self, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
        """(n,) int64 step indices uniform in {0, ..., T-1}."""
        gdev = generator.device if generator is not None else device
        return torch.randint(0, self.T, (n,), generator=generator, device=gdev).to(device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Closed-form forward process (see :meth:`DiffusionSchedule.q_sample`)."""
        return self.schedule.q_sample(x0, t, noise)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """One network call: x_t (B, 1, H, W), t (B,) 0-based, context (B, d) -> x0 estimate (B, 1, H, W)."""
        return self.unet(x_t, t, context)

    def context(self, x: torch.Tensor) -> torch.Tensor | None:
        """Conditioning context from the clean input (B, 1, H, W) in [0, 1]; None if unconditioned."""
        return None

    def _steps(self, k: int, n: int, device) -> torch.Tensor:
        return torch.full((n,), int(k), dtype=torch.long, device=device)

    # ---- per-model parts -----------------------------------------------------------------------

    def _training_loss(self, x0s, t, noise, ctx, generator) -> torch.Tensor:
        """l1 between the x0 estimate from x_t and x0 (both on the model scale)."""
        return F.l1_loss(self.denoise(self.q_sample(x0s, t, noise), t, ctx), x0s)

    def reconstruct_once(self, x0s: torch.Tensor, k: int, noise: torch.Tensor, ctx) -> torch.Tensor:
        """Single-step reconstruction on the model scale.

        Parameters
        ----------
        x0s : Tensor (B, 1, H, W)
            Scaled input.
        k : int
            0-based step index.
        noise : Tensor (B, 1, H, W)
        ctx : Tensor (B, d) or None

        Returns
        -------
        Tensor (B, 1, H, W)
        """
        t = self._steps(k, x0s.shape[0], x0s.device)
        return self.denoise(self.q_sample(x0s, t, noise), t, ctx)

    # ---- interface -----------------------------------------------------------------------------

    def loss(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training loss for healthy slices.

        Parameters
        ----------
        batch : Tensor (B, 1, H, W) in [0, 1]
        generator : torch.Generator, optional
            Draws t ~ U{0..T-1}, the noise (and pDDPM patch positions), in that order.

        Returns
        -------
        Tensor () — mean l1 on the model scale.
        """
        self._check(batch)
        x0s = self.scale(batch)
        t = self.draw_timesteps(batch.shape[0], generator, batch.device)
        noise = self.draw_noise(batch.shape, generator, batch.device, batch.dtype)
        return self._training_loss(x0s, t, noise, self.context(batch), generator)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, noise_level=None, samples: int = 1,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Single-step reconstructions.

        Parameters
        ----------
        x : Tensor (B, 1, H, W) in [0, 1]
            Slices (at test time: the slice stack of one volume).
        mask : Tensor (B, 1, H, W), optional
            Brain mask; not used (the noise covers the whole image, as in the public code).
        noise_level : int or sequence of int, optional
            t_test in 1..T, or a list whose single-step reconstructions are averaged (ENS,
            [250, 500, 750]). Default: the ``t_test`` hyper-parameter.
        samples : int
            Independent reconstructions S, each with fresh noise.
        generator : torch.Generator, optional

        Returns
        -------
        Tensor (S, B, 1, H, W) on the [0, 1] scale (not clipped).
        """
        self._check(x)
        levels = self.t_test if noise_level is None else self._levels(noise_level)
        x0s = self.scale(x)
        ctx = self.context(x)
        outs = []
        for _ in range(int(samples)):
            acc = None
            for k in levels:
                noise = self.draw_noise(x.shape, generator, x.device, x.dtype)
                rec = self.reconstruct_once(x0s, k, noise, ctx)
                acc = rec if acc is None else acc + rec
            outs.append(self.unscale(acc / len(levels)))
        return torch.stack(outs)


@register("anoddpm")
class AnoDDPM(_DiffusionModel):
    """AnoDDPM (Wyatt et al. 2022; method-spec §4.2): simplex-noise DDPM over the whole image.

    Training: t ~ U{1..T}, x_t from the whole slice, l1 between the Unet's x0 estimate and x0.
    Test: one Unet call from x_{t_test} (default t_test = 500), or the ENS average over a list.
    Hyper-parameters: those of :class:`_DiffusionModel` (without ``cond_dim``).
    """

    def __init__(self, image_size=(64, 64), channels=(128, 256, 256), res_blocks=3, schedule="linear", T=1000,
                 noise="simplex", noise_octaves=6, noise_persistence=0.8, noise_frequency=64.0,
                 noise_normalise=False, noise_shared=True, t_test=500, attention=False, dropout=0.0,
                 scale_inputs=True):
        super().__init__(image_size, channels, res_blocks, schedule, T, noise, noise_octaves, noise_persistence,
                         noise_frequency, noise_normalise, noise_shared, t_test, attention, dropout, scale_inputs)


@register("pddpm")
class PatchedDDPM(_DiffusionModel):
    """Patched DDPM (pDDPM, P8.2; method-spec §4.3): noise one square patch, keep the rest as context.

    Training: one patch per slice — a random cell of the fixed sliding-window grid
    (``patch_sampling="grid"``, default) or a uniformly random position (``"random"``); the Unet sees
    ``x_t * M + x0 * (1 - M)`` and predicts x0. ``patch_loss="patch"`` (L_p, default) is the l1 of the
    prediction inside the patch, averaged over the whole image (the public code's ``inpaint`` loss);
    ``"full"`` (L_rec) is the l1 over the whole image.

    Test: for every grid position k (stride ``patch_stride``), noise only patch k (the same noise field
    for all positions), run one Unet step at t_test and keep the prediction inside patch k; the patches
    are stitched, averaging overlaps (:func:`stitch_patches`). All (position, slice) pairs are folded
    into the batch dimension and evaluated ``chunk_size`` images per Unet call.

    Parameters
    ----------
    patch_size : int or float
        Patch side in pixels (int), or as a fraction of the smaller image side (float <= 1). Default
        0.5 = the thesis' 48 px on 96 x 96.
    patch_stride : int or float, optional
        Grid stride (same units); default = ``patch_size`` (non-overlapping grid, as the public code).
    patch_sampling : {"grid", "random"}
    patch_loss : {"patch", "full"}
    chunk_size : int
        Images per Unet call at test time.
    **others
        See :class:`_DiffusionModel`.
    """

    def __init__(self, image_size=(64, 64), channels=(128, 256, 256), res_blocks=3, schedule="linear", T=1000,
                 noise="simplex", noise_octaves=6, noise_persistence=0.8, noise_frequency=64.0,
                 noise_normalise=False, noise_shared=True, t_test=500, attention=False, dropout=0.0,
                 scale_inputs=True, patch_size=0.5, patch_stride=None, patch_sampling="grid", patch_loss="patch",
                 chunk_size=128):
        super().__init__(image_size, channels, res_blocks, schedule, T, noise, noise_octaves, noise_persistence,
                         noise_frequency, noise_normalise, noise_shared, t_test, attention, dropout, scale_inputs)
        self.patch_size = self._pixels(patch_size, "patch_size")
        self.patch_stride = self.patch_size if patch_stride is None else self._pixels(patch_stride, "patch_stride")
        if patch_sampling not in ("grid", "random"):
            raise ValueError(f"patch_sampling must be 'grid' or 'random', got {patch_sampling!r}")
        if patch_loss not in ("patch", "full"):
            raise ValueError(f"patch_loss must be 'patch' or 'full', got {patch_loss!r}")
        self.patch_sampling, self.patch_loss = patch_sampling, patch_loss
        self.chunk_size = max(1, int(chunk_size))
        self.register_buffer("grid", grid_starts(self.image_size, self.patch_size, self.patch_stride), persistent=False)

    def _pixels(self, value, name: str) -> int:
        side = min(self.image_size)
        px = int(round(value * side)) if isinstance(value, float) and value <= 1.0 else int(value)
        if not 1 <= px <= side:
            raise ValueError(f"{name}={value} gives {px} px; it must lie in 1..{side} (the smaller image side)")
        return px

    def _training_loss(self, x0s, t, noise, ctx, generator) -> torch.Tensor:
        b, device = x0s.shape[0], x0s.device
        gdev = generator.device if generator is not None else device
        if self.patch_sampling == "grid":
            idx = torch.randint(0, self.grid.shape[0], (b,), generator=generator, device=gdev).to(device)
            starts = self.grid[idx]
        else:
            h, w = self.image_size
            r = torch.randint(0, h - self.patch_size + 1, (b,), generator=generator, device=gdev)
            c = torch.randint(0, w - self.patch_size + 1, (b,), generator=generator, device=gdev)
            starts = torch.stack([r, c], dim=1).to(device)
        m = patch_masks(starts, self.patch_size, self.image_size).to(x0s.dtype)  # (B, 1, H, W)
        x_in = self.q_sample(x0s, t, noise) * m + x0s * (1 - m)
        err = (self.denoise(x_in, t, ctx) - x0s).abs()
        return (err * m).mean() if self.patch_loss == "patch" else err.mean()

    def reconstruct_once(self, x0s: torch.Tensor, k: int, noise: torch.Tensor, ctx) -> torch.Tensor:
        """Sliding-window single-step reconstruction (B, 1, H, W) on the model scale; see the class docstring."""
        b = x0s.shape[0]
        masks = patch_masks(self.grid, self.patch_size, self.image_size).to(x0s.dtype)  # (K, 1, H, W)
        x_t = self.q_sample(x0s, self._steps(k, b, x0s.device), noise)
        per_call = max(1, self.chunk_size // b)  # patch positions per Unet call
        preds = []
        for i in range(0, masks.shape[0], per_call):
            m = masks[i : i + per_call].unsqueeze(1)  # (P, 1, 1, H, W)
            x_in = (x_t.unsqueeze(0) * m + x0s.unsqueeze(0) * (1 - m)).reshape(-1, *x0s.shape[1:])
            c = None if ctx is None else ctx.repeat(m.shape[0], 1)
            out = self.denoise(x_in, self._steps(k, x_in.shape[0], x0s.device), c)
            preds.append(out.reshape(m.shape[0], b, *x0s.shape[1:]))
        return stitch_patches(torch.cat(preds, dim=0), masks)


@register("cddpm")
class ConditionedDDPM(_DiffusionModel):
    """Context-conditioned DDPM (cDDPM, P8.3; method-spec §4.4).

    A ResNet encoder (:class:`brainuad.models.encoder.ResNetEncoder`) maps the CLEAN input slice (on
    the [0, 1] scale) to a context vector c in R^d; c is concatenated to the time embedding and every
    Unet residual block maps the concatenation with its own MLP to (gamma, beta) for FiLM. The encoder
    is trained jointly with the Unet. Otherwise as :class:`AnoDDPM` (whole-image noise, single step,
    ENS).

    Parameters
    ----------
    context_dim : int
        d (thesis 128; the public code effectively 512).
    encoder_channels, encoder_blocks : sequence of int
        ResNet stage widths and basic blocks per stage.
    encoder_norm : {"batch", "group"}
    encoder_crop : float
        Fraction of the image AREA given to the encoder: the central box with sides scaled by
        ``sqrt(encoder_crop)`` is kept, the rest zeroed (1.0 = whole image). The thesis' conditioning
        experiment "crops the conditioning image at a given width of 50 % / 100 %"; this implements
        the area reading of 50 %.
    pretrained_encoder : str or Path, optional
        Checkpoint of the SSL pre-training (a dict with ``"encoder_state_dict"``), loaded into the
        encoder at construction. A missing file raises ``FileNotFoundError``.
    **others
        See :class:`_DiffusionModel`.
    """

    def __init__(self, image_size=(64, 64), channels=(128, 256, 256), res_blocks=3, schedule="linear", T=1000,
                 noise="simplex", noise_octaves=6, noise_persistence=0.8, noise_frequency=64.0,
                 noise_normalise=False, noise_shared=True, t_test=500, attention=False, dropout=0.0,
                 scale_inputs=True, context_dim=128, encoder_channels=(32, 64, 128, 256), encoder_blocks=(2, 2, 2, 2),
                 encoder_norm="batch", encoder_crop=1.0, pretrained_encoder=None):
        super().__init__(image_size, channels, res_blocks, schedule, T, noise, noise_octaves, noise_persistence,
                         noise_frequency, noise_normalise, noise_shared, t_test, attention, dropout, scale_inputs,
                         cond_dim=int(context_dim))
        from .encoder import ResNetEncoder

        self.encoder = ResNetEncoder(in_channels=1, channels=encoder_channels, blocks=encoder_blocks,
                                     context_dim=int(context_dim), norm=encoder_norm)
        if not 0.0 < float(encoder_crop) <= 1.0:
            raise ValueError(f"encoder_crop must lie in (0, 1], got {encoder_crop}")
        self.encoder_crop = float(encoder_crop)
        if pretrained_encoder is not None:
            self.load_encoder(pretrained_encoder)

    def load_encoder(self, path) -> None:
        """Load ``checkpoint["encoder_state_dict"]`` from ``path`` into the encoder."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained_encoder checkpoint not found: {path}")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(ckpt, dict) or "encoder_state_dict" not in ckpt:
            raise KeyError(f"{path} has no 'encoder_state_dict' (expected a checkpoint of the SSL pre-training)")
        self.encoder.load_state_dict(ckpt["encoder_state_dict"])

    def crop_for_encoder(self, x: torch.Tensor) -> torch.Tensor:
        """Keep the central ``encoder_crop`` fraction of the area of x (B, 1, H, W), zero the rest."""
        if self.encoder_crop >= 1.0:
            return x
        h, w = x.shape[-2:]
        side = math.sqrt(self.encoder_crop)
        ch, cw = max(1, round(h * side)), max(1, round(w * side))
        r0, c0 = (h - ch) // 2, (w - cw) // 2
        out = torch.zeros_like(x)
        out[..., r0 : r0 + ch, c0 : c0 + cw] = x[..., r0 : r0 + ch, c0 : c0 + cw]
        return out

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """c = F_enc(crop(x)): (B, 1, H, W) in [0, 1] -> (B, context_dim)."""
        return self.encoder(self.crop_for_encoder(x))

"""The shared DDPM machinery (:class:`DiffusionModel`, configured by :class:`DiffusionConfig`) and AnoDDPM.

Forward process with T = 1000 linear or cosine betas, structured simplex (or Gaussian) noise, an
x0-predicting Unet trained with an l1 loss, and test-time reconstruction in ONE network call from
x_{t_test} (an ENS list of t_test values is averaged). Conventions: :class:`DiffusionModel`;
hyper-parameter keys: config/README.md (``models``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...noise import KINDS as NOISE_KINDS
from ...noise import make_noise
from .. import register
from .schedule import DiffusionSchedule
from .unet import DenoisingUnet


@dataclass(frozen=True)
class DiffusionConfig:
    """Hyper-parameters every diffusion model shares (the registry keywords of ``anoddpm``, and of
    ``pddpm`` / ``cddpm`` next to their own).

    Attributes
    ----------
    image_size : int or (int, int)
        Slice size (H, W); divisible by ``2 ** (len(channels) - 1)``. Thesis 96 x 96.
    channels : sequence of int
        Unet feature maps per level (thesis [128, 256, 256]).
    res_blocks : int
        Residual blocks per Unet level (thesis 3).
    schedule : {"linear", "cosine"}
        Beta schedule (thesis linear; public code cosine, method-spec §9 C31).
    T : int
        Diffusion steps (1000).
    noise : {"simplex", "gaussian", "simplex3d"}
        Noise kind (``simplex3d`` on slices = a random planar cut through 3D simplex noise).
    noise_octaves, noise_persistence, noise_frequency : int, float, float
        Fractal simplex parameters (6, 0.8, 64 px: the public code's values).
    noise_normalise : bool
        Standardise every noise field to mean 0, std 1 (False = reference code).
    noise_shared : bool
        One noise field per call, repeated over the batch (True = reference code).
    t_test : int or sequence of int
        Default test noise level(s), thesis convention 1..T (500).
    attention : bool
        Self-attention in the Unet middle block.
    dropout : float
        Unet dropout.
    scale_inputs : bool
        Map [0, 1] to [-1, 1] for the diffusion and back.
    """

    image_size: int | Sequence[int] = (64, 64)
    channels: Sequence[int] = (128, 256, 256)
    res_blocks: int = 3
    schedule: str = "linear"
    T: int = 1000
    noise: str = "simplex"
    noise_octaves: int = 6
    noise_persistence: float = 0.8
    noise_frequency: float = 64.0
    noise_normalise: bool = False
    noise_shared: bool = True
    t_test: int | Sequence[int] = 500
    attention: bool = False
    dropout: float = 0.0
    scale_inputs: bool = True


def _as_pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return int(size), int(size)
    h, w = (int(s) for s in size)
    return h, w


class DiffusionModel(nn.Module):
    """Shared DDPM machinery: schedule, noise, Unet, single-step reconstruction, ENS, samples.

    Subclasses override :meth:`_training_loss`, :meth:`context` and, for test-time inputs other than
    the whole noised image, :meth:`network_inputs` and :meth:`combine`.

    Parameters
    ----------
    config : DiffusionConfig
    cond_dim : int
        Context width for the Unet (set by the cDDPM; 0 = unconditioned).

    Notes
    -----
    * **Timesteps.** The thesis counts t = 1..T. The schedule arrays and the network use the 0-based
      index k = t - 1 (the public code's ``randint(0, 1000)`` and ``t = test_timesteps - 1``): training
      draws k uniformly from {0, ..., T-1}; ``t_test = 500`` means k = 499.
    * **Intensity scale.** Inputs in [0, 1] are mapped to [-1, 1] before noising and the prediction
      mapped back (``scale_inputs``, the public code's ``normalize_to_neg_one_to_one``); the loss is
      computed on the [-1, 1] scale. Reconstructions are not clipped.
    * **Where the noise goes.** Over the whole image (AnoDDPM, cDDPM) or the whole patch (pDDPM),
      background included; the brain mask passed to ``reconstruct`` is not used (method-spec App. B.1).
    * **One noise field per batch** with ``noise_shared`` (the public code): one field per call,
      repeated over the batch, i.e. over all slices of a volume at test time. Every t_test of an
      ensemble and every sample draws a fresh field; pDDPM uses the same field for all patch positions.
    * All randomness (t, noise, patch positions) comes from the ``generator`` argument, drawn on the
      generator's device: pass a generator on the input's device (as :func:`brainuad.training.fit`
      and :func:`brainuad.inference.run_model` do).
    """

    input_dims = 2
    trainable = True
    produces = "recon"
    random_device = "model"

    def __init__(self, config: DiffusionConfig, cond_dim: int = 0):
        super().__init__()
        self.config = config
        self.image_size = _as_pair(config.image_size)
        if config.noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {config.noise!r}")
        self.unet = DenoisingUnet(config.channels, config.res_blocks, cond_dim=cond_dim, attention=config.attention,
                                  dropout=config.dropout)
        f = self.unet.downsample_factor
        if self.image_size[0] % f or self.image_size[1] % f:
            raise ValueError(f"image_size {tuple(self.image_size)} must be divisible by 2**(len(channels)-1) = {f}; "
                             "change preprocess.crop_pad/downsample or the model channels")
        self.schedule = DiffusionSchedule(config.schedule, int(config.T))
        self.T = int(config.T)
        self.noise_kind = config.noise
        self.noise_kwargs = {"octaves": int(config.noise_octaves), "persistence": float(config.noise_persistence),
                             "frequency": float(config.noise_frequency), "normalise": bool(config.noise_normalise)}
        self.noise_shared = bool(config.noise_shared)
        self.scale_inputs = bool(config.scale_inputs)
        self.t_test = self._levels(config.t_test)

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

    #: images per network call at test time when the caller sets no budget (None: the B slices given)
    chunk_size: int | None = None

    def network_inputs(self, x0s: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """What the network sees for each input position P at test time (P = 1: the noised image).

        Parameters
        ----------
        x0s : Tensor (B, 1, H, W)
            Scaled clean input.
        x_t : Tensor (..., B, 1, H, W)
            Noised inputs (any leading dimensions, e.g. the samples x levels of :meth:`reconstruct`).

        Returns
        -------
        Tensor (..., P, B, 1, H, W)
        """
        return x_t.unsqueeze(-5)

    def combine(self, preds: torch.Tensor) -> torch.Tensor:
        """Merge the P per-position predictions (..., P, B, 1, H, W) into (..., B, 1, H, W)."""
        return preds.squeeze(-5)

    def denoise_chunked(self, x_in: torch.Tensor, t: torch.Tensor, ctx: torch.Tensor | None,
                        max_images: int) -> torch.Tensor:
        """:meth:`denoise` on N images in calls of at most ``max_images`` (the memory budget).

        Parameters
        ----------
        x_in : Tensor (N, 1, H, W)
        t : Tensor (N,) int64
        ctx : Tensor (N, d) or None
        max_images : int

        Returns
        -------
        Tensor (N, 1, H, W) float32 (or x_in's dtype)
        """
        n, step = x_in.shape[0], max(1, int(max_images))
        if n <= step:
            return self.denoise(x_in, t, ctx).to(x_in.dtype)
        outs = [self.denoise(x_in[i : i + step], t[i : i + step], None if ctx is None else ctx[i : i + step])
                for i in range(0, n, step)]
        return torch.cat([o.to(x_in.dtype) for o in outs])

    def reconstruct_once(self, x0s: torch.Tensor, k: int, noise: torch.Tensor, ctx,
                         max_images: int | None = None) -> torch.Tensor:
        """Single-step reconstruction on the model scale (one noise level, one sample).

        Parameters
        ----------
        x0s : Tensor (B, 1, H, W)
            Scaled input.
        k : int
            0-based step index.
        noise : Tensor (B, 1, H, W)
        ctx : Tensor (B, d) or None
        max_images : int, optional
            Images per network call (default :attr:`chunk_size`, else all P x B at once).

        Returns
        -------
        Tensor (B, 1, H, W)
        """
        b = x0s.shape[0]
        x_t = self.q_sample(x0s, self._steps(k, b, x0s.device), noise)
        inputs = self.network_inputs(x0s, x_t)  # (P, B, 1, H, W)
        p = inputs.shape[0]
        c = None if ctx is None else ctx.repeat(p, 1)
        preds = self.denoise_chunked(inputs.reshape(-1, *x0s.shape[1:]), self._steps(k, p * b, x0s.device), c,
                                     max_images or self.chunk_size or p * b)
        return self.combine(preds.reshape(p, b, *x0s.shape[1:]))

    def activation_bytes(self, bytes_per_element: int = 4) -> int:
        """Estimated peak activation memory of one image in a test-time network call (bytes).

        The Unet keeps every encoder output for its skip connections and works on about eight tensors of
        the widest decoder input at a time: ``(sum of skip elements + 8 * widest decoder input) * bytes``.
        ``benchmarks/gpu_check.sh`` prints the measured peak next to this estimate.
        """
        h, w = self.image_size
        ch = self.unet.channels
        skip = ch[0] * h * w  # the input convolution
        widest = 0
        for level, c in enumerate(ch):
            px = (h >> level) * (w >> level)
            skip += c * px * (self.unet.res_blocks + (1 if level < len(ch) - 1 else 0))
            widest = max(widest, 2 * c * px)  # concatenated skip + features
        return int((skip + 8 * widest) * bytes_per_element)

    def images_per_call(self, memory_mb: float, bytes_per_element: int = 4) -> int:
        """Images per network call that fit a test-time activation budget of ``memory_mb`` MiB (>= 1)."""
        return max(1, int(float(memory_mb) * 2**20 // self.activation_bytes(bytes_per_element)))

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
                    generator: torch.Generator | None = None, max_images: int | None = None) -> torch.Tensor:
        """Single-step reconstructions, every sample and noise level in batched network calls.

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
        max_images : int, optional
            Images per network call (the memory budget; :meth:`images_per_call`). Default: the B
            slices given (pDDPM: ``chunk_size``).

        Returns
        -------
        Tensor (S, B, 1, H, W) on the [0, 1] scale (not clipped).

        Notes
        -----
        The S x L noise fields (L levels) are drawn first, sample-major then level, i.e. in the order of
        a loop ``for sample: for level: draw; reconstruct_once``; then all S x L x P x B network inputs
        (P patch positions) are evaluated in calls of ``max_images`` images, and the L levels are
        averaged in that loop's order. The result therefore equals the per-sample loop (up to the
        batch-size dependence of the convolution kernels), whatever ``max_images`` is.
        """
        self._check(x)
        levels = self.t_test if noise_level is None else self._levels(noise_level)
        n_samples, n_levels, b = int(samples), len(levels), x.shape[0]
        x0s = self.scale(x)
        ctx = self.context(x)
        noise = torch.stack([self.draw_noise(x.shape, generator, x.device, x.dtype)
                             for _ in range(n_samples * n_levels)])  # (S*L, B, 1, H, W)
        ks = torch.tensor(levels, dtype=torch.long, device=x.device).repeat(n_samples)  # (S*L,)
        view = (-1,) + (1,) * x.dim()
        sa = self.schedule.sqrt_alphas_cumprod[ks].view(view).to(x.dtype)
        sb = self.schedule.sqrt_one_minus_alphas_cumprod[ks].view(view).to(x.dtype)
        x_t = sa * x0s.unsqueeze(0) + sb * noise
        inputs = self.network_inputs(x0s, x_t)  # (S*L, P, B, 1, H, W)
        p = inputs.shape[1]
        t = ks.repeat_interleave(p * b)
        c = None if ctx is None else ctx.repeat(n_samples * n_levels * p, 1)
        preds = self.denoise_chunked(inputs.reshape(-1, *x.shape[1:]), t, c, max_images or self.chunk_size or p * b)
        rec = self.combine(preds.reshape(inputs.shape)).reshape(n_samples, n_levels, *x.shape)
        acc = rec[:, 0]
        for level in range(1, n_levels):  # the reference loop's summation order
            acc = acc + rec[:, level]
        return self.unscale(acc / n_levels)


@register("anoddpm")
class AnoDDPM(DiffusionModel):
    """AnoDDPM (Wyatt et al. 2022; method-spec §4.2): simplex-noise DDPM over the whole image.

    Training: t ~ U{1..T}, x_t from the whole slice, l1 between the Unet's x0 estimate and x0.
    Test: one Unet call from x_{t_test} (default t_test = 500), or the ENS average over a list.

    Parameters
    ----------
    **hparams
        The :class:`DiffusionConfig` fields.
    """

    def __init__(self, **hparams):
        super().__init__(DiffusionConfig(**hparams))

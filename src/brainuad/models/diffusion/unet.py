"""ADM-style denoising Unet with FiLM (scale-shift) conditioning, shared by the diffusion models.

Layout (method-spec §3.2, "Unet similar to Dhariwal & Nichol (2021)"; public code: OpenAI ADM
``UNetModel`` with ``use_scale_shift_norm=True``, peers §1.0 / method-spec App. B.5):

* input 3x3 convolution to ``channels[0]`` feature maps;
* per resolution level ``i``: ``res_blocks`` residual blocks with ``channels[i]`` maps, then (except on
  the last level) a stride-2 3x3 downsampling convolution;
* middle: residual block, optional self-attention (MONAI ``SpatialAttentionBlock``; off by default),
  residual block;
* mirrored decoder: ``res_blocks + 1`` residual blocks per level, each taking the concatenated skip
  connection, and a stride-2 transposed convolution (4x4) to go up a level;
* output: GroupNorm -> SiLU -> 3x3 convolution to 1 channel (the x0 estimate).

Conditioning: the timestep goes through the sinusoidal embedding (:func:`timestep_embedding`, as MONAI's
``get_timestep_embedding``, ``channels[0]`` wide) and an MLP (Linear -> SiLU -> Linear, ``4 * channels[0]`` wide, as ADM). For the
cDDPM a continuous context vector c (``cond_dim`` wide) is concatenated to it. Every residual block
maps the conditioning embedding with its own MLP (SiLU -> Linear) to (gamma, beta) and modulates its
normalised features as ``f' = f * (gamma + 1) + beta`` (FiLM / ADM scale-shift-norm). This block is
written here because MONAI's ``DiffusionModelUNet`` only *adds* the time embedding and cannot take a
continuous context vector this way (peers §2.4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

# MONAI is imported only for the optional attention block: importing any MONAI module imports all of
# MONAI (its __init__ loads every subpackage; seconds per Snakemake job), see timestep_embedding.


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal timestep embedding [cos(t f_k), sin(t f_k)], f_k = max_period^(-k / (dim // 2)).

    The same values as ``monai.networks.nets.diffusion_model_unet.get_timestep_embedding`` (Ho et al.
    2020; tests/models/test_diffusion.py checks it against MONAI), written out so that training and
    reconstruct jobs do not import MONAI.

    Parameters
    ----------
    timesteps : Tensor (B,)
    dim : int
        Embedding width; an odd width gets one zero column.

    Returns
    -------
    Tensor (B, dim) float32 on the device of ``timesteps``.
    """
    if timesteps.ndim != 1:
        raise ValueError(f"timesteps must be 1-D (B,), got shape {tuple(timesteps.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    args = timesteps[:, None].float() * torch.exp(exponent / half)[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _attention_block(channels: int) -> nn.Module:
    """MONAI's ``SpatialAttentionBlock`` for the middle of the Unet (imported only when it is used)."""
    from monai.networks.blocks import SpatialAttentionBlock

    return SpatialAttentionBlock(2, channels, num_head_channels=64 if channels % 64 == 0 else channels,
                                 norm_num_groups=num_groups(channels))


def num_groups(channels: int) -> int:
    """GroupNorm groups: the largest of 32, 16, 8, 4, 2, 1 that divides ``channels``."""
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


def film(h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """FiLM / scale-shift modulation ``h * (gamma + 1) + beta``.

    Parameters
    ----------
    h : Tensor (B, C, H, W)
    gamma, beta : Tensor (B, C, 1, 1)

    Returns
    -------
    Tensor (B, C, H, W)
    """
    return h * (gamma + 1.0) + beta


class FiLMResBlock(nn.Module):
    """Pre-activation residual block with FiLM conditioning (ADM ``ResBlock``, scale-shift-norm).

    ``h = Conv1(SiLU(GN1(x)))``; ``h = GN2(h) * (gamma + 1) + beta`` with
    ``(gamma, beta) = Linear(SiLU(emb))``; ``out = skip(x) + Conv2(Dropout(SiLU(h)))``.

    Parameters
    ----------
    cin, cout : int
        Input / output feature maps.
    emb_dim : int
        Width of the conditioning embedding (time embedding, possibly concatenated with a context).
    dropout : float
        Dropout before the second convolution (0 in the public code).
    """

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.norm2 = nn.GroupNorm(num_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def film_params(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, emb_dim) -> gamma, beta, each (B, cout, 1, 1)."""
        gamma, beta = self.emb(emb).chunk(2, dim=1)
        return gamma[..., None, None], beta[..., None, None]

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block.

        Parameters
        ----------
        x : Tensor (B, cin, H, W)
        emb : Tensor (B, emb_dim), optional
            Conditioning embedding; ``None`` skips the modulation (the unconditioned path, equal to
            gamma = beta = 0).

        Returns
        -------
        Tensor (B, cout, H, W)
        """
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if emb is not None:
            gamma, beta = self.film_params(emb)
            h = film(h, gamma, beta)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class _Down(nn.Module):
    """Stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class _Up(nn.Module):
    """Stride-2 4x4 transposed convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class DenoisingUnet(nn.Module):
    """x0-predicting Unet ``f(x_t, t[, c]) -> x0``.

    Parameters
    ----------
    channels : sequence of int
        Feature maps per resolution level (thesis / public code ``[128, 256, 256]``); the image is
        downsampled ``len(channels) - 1`` times.
    res_blocks : int
        Residual blocks per level in the encoder (thesis 3); the decoder has one more per level.
    cond_dim : int
        Width of the context vector c concatenated to the time embedding (0 = unconditioned).
    attention : bool
        Self-attention in the middle block (lowest resolution). Off by default: the thesis does not
        mention attention, the public code has it only in the middle block.
    dropout : float
        Dropout inside the residual blocks.
    in_channels, out_channels : int

    Attributes
    ----------
    time_dim : int
        Width of the time embedding (``4 * channels[0]``).
    emb_dim : int
        Width of the conditioning embedding each block sees (``time_dim + cond_dim``).
    downsample_factor : int
        ``2 ** (len(channels) - 1)``; H and W must be divisible by it.
    """

    def __init__(self, channels: Sequence[int] = (128, 256, 256), res_blocks: int = 3, cond_dim: int = 0,
                 attention: bool = False, dropout: float = 0.0, in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or int(res_blocks) < 1:
            raise ValueError(f"need at least one level and one residual block, got channels={channels}, "
                             f"res_blocks={res_blocks}")
        self.channels, self.res_blocks, self.cond_dim = channels, int(res_blocks), int(cond_dim)
        self.downsample_factor = 2 ** (len(channels) - 1)
        ch0 = channels[0]
        self.time_dim = 4 * ch0
        self.emb_dim = self.time_dim + self.cond_dim
        self.time_mlp = nn.Sequential(nn.Linear(ch0, self.time_dim), nn.SiLU(), nn.Linear(self.time_dim, self.time_dim))
        self.inp = nn.Conv2d(in_channels, ch0, 3, padding=1)

        self.down = nn.ModuleList()
        skips, cur = [ch0], ch0
        for level, ch in enumerate(channels):
            for _ in range(self.res_blocks):
                self.down.append(FiLMResBlock(cur, ch, self.emb_dim, dropout))
                cur = ch
                skips.append(cur)
            if level < len(channels) - 1:
                self.down.append(_Down(cur))
                skips.append(cur)

        self.mid1 = FiLMResBlock(cur, cur, self.emb_dim, dropout)
        self.mid_attn = _attention_block(cur) if attention else nn.Identity()
        self.mid2 = FiLMResBlock(cur, cur, self.emb_dim, dropout)

        self.up = nn.ModuleList()
        for level in reversed(range(len(channels))):
            ch = channels[level]
            for r in range(self.res_blocks + 1):
                self.up.append(FiLMResBlock(cur + skips.pop(), ch, self.emb_dim, dropout))
                cur = ch
                if level > 0 and r == self.res_blocks:
                    self.up.append(_Up(cur))
        self.out = nn.Sequential(nn.GroupNorm(num_groups(cur), cur), nn.SiLU(),
                                 nn.Conv2d(cur, out_channels, 3, padding=1))

    def embed(self, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Conditioning embedding.

        Parameters
        ----------
        t : Tensor (B,) int64
            Timestep indices (0-based).
        context : Tensor (B, cond_dim), optional
            Required when ``cond_dim > 0``.

        Returns
        -------
        Tensor (B, time_dim + cond_dim)
        """
        emb = self.time_mlp(timestep_embedding(t, self.channels[0]).to(self.inp.weight.dtype))
        if self.cond_dim:
            if context is None or context.shape != (t.shape[0], self.cond_dim):
                got = None if context is None else tuple(context.shape)
                raise ValueError(f"expected a context of shape ({t.shape[0]}, {self.cond_dim}), got {got}")
            emb = torch.cat([emb, context.to(emb.dtype)], dim=1)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Predict x0.

        Parameters
        ----------
        x : Tensor (B, in_channels, H, W)
            Noisy input x_t; H and W divisible by ``downsample_factor``.
        t : Tensor (B,) int64
            Timestep indices (0-based).
        context : Tensor (B, cond_dim), optional

        Returns
        -------
        Tensor (B, out_channels, H, W)
        """
        if x.shape[-1] % self.downsample_factor or x.shape[-2] % self.downsample_factor:
            raise ValueError(f"H and W must be divisible by {self.downsample_factor}, got {tuple(x.shape)}")
        emb = self.embed(t, context)
        h = self.inp(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, FiLMResBlock) else block(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block in self.up:
            if isinstance(block, FiLMResBlock):
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = block(h)
        return self.out(h)

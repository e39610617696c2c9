"""Beta schedules and the closed-form DDPM forward process (method-spec §3.1)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


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

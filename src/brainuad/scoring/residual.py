"""Residual scores: pixel-wise l1 / l2 distance between the input and the mean reconstruction."""

from __future__ import annotations

import torch

from . import register


@register("l1")
def l1(image: torch.Tensor, recons: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """|x - mean_s(x_rec_s)| inside the mask.

    Parameters
    ----------
    image : (B, 1, ...) input
    recons : (S, B, 1, ...) reconstructions; averaged over S first (ENS-style)
    mask : (B, 1, ...) bool brain mask
    """
    return (image - recons.mean(dim=0)).abs() * mask


@register("l2")
def l2(image: torch.Tensor, recons: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(x - mean_s(x_rec_s))^2 inside the mask (same shapes as :func:`l1`)."""
    return (image - recons.mean(dim=0)).pow(2) * mask

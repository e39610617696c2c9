"""Residual scores: pixel-wise l1 / l2 distance between the input and the mean reconstruction.

Written with operations numpy arrays and torch tensors share (``arrays="any"``), so a score job of
these scorings runs in numpy and never imports torch, and CUDA tensors stay on the GPU.
"""

from __future__ import annotations

from . import register


@register("l1", arrays="any")
def l1(image, recons, mask):
    """|x - mean_s(x_rec_s)| inside the mask.

    Parameters
    ----------
    image : ndarray or Tensor, (B, 1, ...) input
    recons : ndarray or Tensor, (S, B, 1, ...) reconstructions; averaged over S first (ENS-style)
    mask : ndarray or Tensor, (B, 1, ...) bool brain mask

    Returns
    -------
    ndarray or Tensor, (B, 1, ...), the type of the inputs
    """
    return abs(image - recons.mean(0)) * mask


@register("l2", arrays="any")
def l2(image, recons, mask):
    """(x - mean_s(x_rec_s))^2 inside the mask (same shapes and types as :func:`l1`)."""
    return (image - recons.mean(0)) ** 2 * mask

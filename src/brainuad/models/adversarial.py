"""Building blocks of the adversarially trained baselines (RA, PHANES, f-AnoGAN) inside the one training loop.

The training loop (:func:`brainuad.training.fit`) has one optimiser over all parameters and calls
``loss(batch)`` once per step. The GAN-type models fit that interface without rule or loop changes:

* **Alternating updates.** A step's loss reaches only the parameters that the paper updates in that step:
  the other network is called through :func:`frozen` (its parameters are detached, gradients still flow
  through its activations). Parameters without a gradient are skipped by Adam (the loop zeroes gradients
  with ``set_to_none=True``), so e.g. a WGAN-GP critic step leaves the generator and its Adam moments
  untouched, exactly as with two optimisers.
* **Stages.** :class:`StagedTraining` counts the training steps in a buffer (saved in the checkpoint and the
  resumable state, so a resumed run continues in the right stage) and tells a model which stage and which
  sub-step it is in.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.func import functional_call


def frozen(module: nn.Module, *args, **kwargs):
    """Call ``module`` with its parameters detached: gradients flow to the inputs but not to its weights.

    Buffers (e.g. BatchNorm statistics) behave as in a normal call.
    """
    params = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, params, args, kwargs)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x critic(x_hat)||_2 - 1)^2] (Gulrajani et al. 2017).

    Parameters
    ----------
    critic : callable (B, ...) -> (B,) or (B, 1)
    real, fake : Tensor (B, 1, H, W)
        ``fake`` must be detached from the generator.
    generator : torch.Generator, optional
        Source of the interpolation weights eps ~ U[0, 1] (one per sample).

    Returns
    -------
    Tensor () — mean over the batch.
    """
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=generator, device=real.device,
                     dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


class StagedTraining(nn.Module):
    """Mixin: a persistent training-step counter for multi-stage / alternating objectives.

    ``self.train_step`` is a long buffer; :meth:`next_step` returns the index of the current training step
    and advances the counter, but only in a real training call (module in train mode and autograd on), so the
    loop's validation passes (``eval()`` + ``no_grad``) do not move it.
    """

    def _init_counter(self) -> None:
        self.register_buffer("train_step", torch.zeros((), dtype=torch.long))

    def is_training_call(self) -> bool:
        return self.training and torch.is_grad_enabled()

    def next_step(self) -> int:
        """Index of this training step (0-based); advances the counter in training calls only."""
        step = int(self.train_step)
        if self.is_training_call():
            self.train_step += 1
        return step


def conv_block(cin: int, cout: int, *, norm: str = "batch", down: bool = True) -> nn.Sequential:
    """4x4 stride-2 convolution (down) or transposed convolution (up), normalisation, LeakyReLU(0.2).

    ``norm``: "batch" (generators, VAEs), "layer" (WGAN-GP critics: no batch statistics, per the paper's
    advice) or "none".
    """
    conv = (nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=norm == "none") if down
            else nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=norm == "none"))
    layers = [conv]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    elif norm == "layer":
        layers.append(nn.GroupNorm(1, cout))
    elif norm != "none":
        raise ValueError(f"norm must be batch, layer or none, got {norm!r}")
    layers.append(nn.LeakyReLU(0.2, inplace=True) if down else nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def check_size(image_size, levels: int) -> tuple[int, int]:
    """(H, W) of ``image_size``; ValueError unless both are divisible by 2 ** levels."""
    h, w = (int(s) for s in image_size)
    factor = 2 ** levels
    if h % factor or w % factor:
        raise ValueError(f"image_size {tuple(image_size)} must be divisible by 2**len(channels) = {factor}; "
                         "change preprocess.crop_pad/downsample or the model channels")
    return h, w


def check_slices(x: torch.Tensor, size: tuple[int, int]) -> None:
    if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"expected slices of shape (B, 1, {size[0]}, {size[1]}), got {tuple(x.shape)}")

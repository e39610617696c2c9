"""Self-supervised masked-image-modelling pre-training of the cDDPM context encoder (P8.3 §3.3, "SSL").

P8.3 pre-trains F_enc with SparK (Tian et al., ICLR 2023): random patches of the healthy training
slices are erased (mask-out ratio **65 %**), the CNN encoder sees only the visible part, a decoder
reconstructs the image and the loss is taken on the erased patches only; afterwards the decoder is
discarded and F_enc is fine-tuned jointly with the DDPM. The public code's SparK config uses
``mask_ratio: 0.65``, ``loss_on_mask: True``, AdamW (weight decay 0.05, betas (0.9, 0.95)).

This module is a **dense-masking approximation** of SparK:

* Masking: :func:`random_patch_mask` erases exactly ``round(ratio * n_patches)`` square patches of
  ``patch`` px per slice. The erased pixels are **set to 0** in the encoder input (SparK instead runs
  sparse convolutions that skip masked positions at every layer; with dense convolutions visible
  features leak a few pixels into the erased area, which is the usual "dense masking" approximation).
  The default patch (8 px) equals the stride of the default four-stage
  :class:`~brainuad.models.encoder.ResNetEncoder`, as in SparK (patch = encoder stride).
* Mask tokens: as in SparK, last-stage feature cells whose patch is erased are replaced by a learned
  mask embedding before decoding (cells at least half erased when ``patch`` differs from the stride).
* Decoder: a light convolutional decoder on the **last-stage map only** (SparK's decoder is a
  hierarchical UNet-like decoder over four feature scales, ``pyramid: 4``): one
  ``ConvTranspose2d(4, stride 2) -> Conv3x3 -> BatchNorm -> ReLU`` block per factor 2, widths
  ``decoder_dim`` halved per block (min 16), and a final 1x1 convolution to one channel.
* Loss: **mean squared error over the erased pixels only** (:func:`masked_mse`), SparK's
  ``loss_on_mask``. SparK normalises every target patch by its own mean and std; we regress the raw
  [0, 1] intensities, because slices have many empty background patches (zero variance).

The loop samples slices exactly like :mod:`brainuad.training.loop` (uniform with replacement over
all slices), is seeded (deterministic on the CPU), keeps the checkpoint with the lowest masked
validation loss (fixed validation masks) and writes it atomically. It is not resumable (one short job).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.encoder import ResNetEncoder
from .loop import _atomic_save, _write_log, resolve_device, sample_batch, validation_batches


def random_patch_mask(shape, ratio: float, patch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random square-patch masks with an exact number of erased patches per sample.

    Parameters
    ----------
    shape : (B, H, W) or (B, C, H, W)
        Batch shape; H and W must be divisible by ``patch``.
    ratio : float in [0, 1]
        Fraction of the ``(H / patch) * (W / patch)`` patches to erase; exactly
        ``round(ratio * n_patches)`` per sample.
    patch : int
        Patch side in pixels.
    generator : torch.Generator, optional (CPU)

    Returns
    -------
    BoolTensor (B, 1, H, W) on the CPU, True = erased. Samples get independent masks.
    """
    b, h, w = int(shape[0]), int(shape[-2]), int(shape[-1])
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"image size {(h, w)} must be divisible by the patch size {patch}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in [0, 1], got {ratio}")
    gh, gw = h // patch, w // patch
    n = gh * gw
    k = int(round(ratio * n))
    order = torch.rand(b, n, generator=generator).argsort(dim=1)
    grid = torch.zeros(b, n, dtype=torch.bool)
    grid.scatter_(1, order[:, :k], True)
    grid = grid.view(b, 1, gh, gw)
    return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the erased pixels only.

    Parameters
    ----------
    pred, target : Tensor (B, 1, H, W)
    mask : BoolTensor (B, 1, H, W), True = erased (counted in the loss)

    Returns
    -------
    0-d Tensor: ``sum(mask * (pred - target)**2) / max(sum(mask), 1)``.
    """
    m = mask.to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum().clamp_min(1.0)


class MaskedAutoencoder(nn.Module):
    """ResNet encoder + mask tokens + light convolutional decoder (dense SparK approximation).

    Parameters
    ----------
    encoder : ResNetEncoder
    decoder_dim : int
        Width of the first decoder block (halved per upsampling block, at least 16).
    """

    def __init__(self, encoder: ResNetEncoder, decoder_dim: int = 128):
        super().__init__()
        self.encoder = encoder
        c = encoder.out_channels
        self.mask_token = nn.Parameter(torch.zeros(1, c, 1, 1))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        n_up = int(round(math.log2(encoder.downsample_factor)))
        blocks, cin = [], c
        for i in range(n_up):
            cout = max(16, int(decoder_dim) // (2 ** i))
            blocks += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1),
                       nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        if not blocks:
            blocks = [nn.Conv2d(cin, max(16, int(decoder_dim)), 3, padding=1), nn.ReLU(inplace=True)]
            cin = max(16, int(decoder_dim))
        self.decoder = nn.Sequential(*blocks, nn.Conv2d(cin, 1, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct slices from their visible part.

        Parameters
        ----------
        x : Tensor (B, 1, H, W)
        mask : BoolTensor (B, 1, H, W), True = erased

        Returns
        -------
        Tensor (B, 1, H, W) reconstruction (loss only on the erased pixels).
        """
        feats = self.encoder.feature_maps(x * (~mask).to(x.dtype))
        cell = F.adaptive_avg_pool2d(mask.to(feats.dtype), feats.shape[-2:]) >= 0.5
        feats = torch.where(cell, self.mask_token.to(feats.dtype), feats)
        return self.decoder(feats)


def pretrain_encoder(
    train_volumes: np.ndarray,
    val_volumes: np.ndarray,
    *,
    encoder_hparams: dict,
    mask_ratio: float = 0.65,
    patch: int = 8,
    max_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str = "auto",
    out_path: str | Path,
    out_log: str | Path,
    progress: bool = True,
    val_every: int = 100,
    val_max_slices: int = 512,
    weight_decay: float = 0.05,
    decoder_dim: int = 128,
    amp: bool = True,
) -> dict:
    """Pre-train a :class:`ResNetEncoder` by masked image modelling on healthy slices.

    Parameters
    ----------
    train_volumes, val_volumes : ndarray (N, D, H, W)
        Healthy volumes in [0, 1]; H and W divisible by ``patch`` and by the encoder stride.
    encoder_hparams : dict
        :class:`ResNetEncoder` arguments (stored in the checkpoint).
    mask_ratio : float
        Fraction of erased patches (0.65 in P8.3).
    patch : int
        Masking patch side in px (default 8 = stride of the default encoder).
    max_steps, batch_size, lr : int, int, float
        AdamW steps, slices per step, learning rate (betas (0.9, 0.95) as SparK's public config).
    seed : int
        Seeds initialisation (``seed``), slice sampling (``seed + 1``), training masks (``seed + 2``)
        and the fixed validation masks (``seed + 3``).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    out_path : path
        Checkpoint ``{"encoder_hparams", "encoder_state_dict", "step", "val_loss", "mask_ratio",
        "patch"}`` of the step with the lowest masked validation loss, written atomically.
    out_log : path
        TSV with columns ``step, loss, val_loss, seconds`` (val_loss empty between validations).
    progress : bool
        tqdm progress bar on stderr.
    val_every : int
        Validate every this many steps and at the last step.
    val_max_slices : int
        Cap on validation slices (evenly spaced subset); 0 = all.
    weight_decay : float
        AdamW weight decay (0.05 as SparK's public config).
    decoder_dim : int
        Width of the first decoder block.
    amp : bool
        bfloat16 autocast on CUDA (ignored on the CPU).

    Returns
    -------
    dict with ``step``, ``best_val_loss``, ``best_step``, ``initial_val_loss`` (masked loss of the
    untrained network on the validation masks).
    """
    from tqdm import tqdm

    dev = resolve_device(device)
    torch.manual_seed(seed)
    encoder = ResNetEncoder(**encoder_hparams)
    mae = MaskedAutoencoder(encoder, decoder_dim=decoder_dim).to(dev)
    opt = torch.optim.AdamW(mae.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    use_amp = amp and dev.type == "cuda"
    sample_gen = torch.Generator().manual_seed(seed + 1)
    mask_gen = torch.Generator().manual_seed(seed + 2)

    val_batches = list(validation_batches(val_volumes, 2, batch_size, val_max_slices))
    vgen = torch.Generator().manual_seed(seed + 3)
    val_masks = [random_patch_mask(b.shape, mask_ratio, patch, vgen) for b in val_batches]

    def validate() -> float:
        mae.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch, mask in zip(val_batches, val_masks):
                batch, mask = batch.to(dev), mask.to(dev)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                    pred = mae(batch, mask)
                n = float(mask.sum())
                total += float(masked_mse(pred.float(), batch, mask)) * n
                count += n
        mae.train()
        return total / max(count, 1.0)

    initial_val = validate()
    best_val, best_step, best_state, rows = math.inf, 0, None, []
    t0 = time.time()
    mae.train()
    with tqdm(total=max_steps, disable=not progress, mininterval=5.0, desc="pretrain encoder") as bar:
        for step in range(1, max_steps + 1):
            batch = sample_batch(train_volumes, 2, batch_size, sample_gen)
            mask = random_patch_mask(batch.shape, mask_ratio, patch, mask_gen)
            batch, mask = batch.to(dev), mask.to(dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                pred = mae(batch, mask)
            loss = masked_mse(pred.float(), batch, mask)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pre-training loss became {float(loss)} at step {step}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            row = {"step": step, "loss": float(loss.detach()), "val_loss": "", "seconds": round(time.time() - t0, 3)}
            if step % val_every == 0 or step == max_steps:
                val = validate()
                row["val_loss"] = val
                if val < best_val:
                    best_val, best_step = val, step
                    best_state = {k: v.detach().cpu().clone() for k, v in mae.encoder.state_dict().items()}
                bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{val:.4f}")
            rows.append(row)
            bar.update(1)

    if best_state is None:  # max_steps == 0
        best_state = {k: v.detach().cpu().clone() for k, v in mae.encoder.state_dict().items()}
        best_val = initial_val
    _atomic_save({"encoder_hparams": dict(encoder_hparams), "encoder_state_dict": best_state, "step": best_step,
                  "val_loss": best_val, "mask_ratio": float(mask_ratio), "patch": int(patch)}, Path(out_path))
    _write_log(rows, Path(out_log))
    return {"step": max_steps, "best_val_loss": best_val, "best_step": best_step, "initial_val_loss": initial_val}


def load_pretrained_encoder(path: str | Path, device: str = "cpu") -> ResNetEncoder:
    """Rebuild the :class:`ResNetEncoder` stored by :func:`pretrain_encoder` (train mode, on ``device``)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    encoder = ResNetEncoder(**ckpt["encoder_hparams"])
    encoder.load_state_dict(ckpt["encoder_state_dict"])
    return encoder.to(resolve_device(device))

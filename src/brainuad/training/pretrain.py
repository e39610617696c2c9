"""Self-supervised pre-training of the cDDPM context encoder (P8.3 §3.3, "SSL"), trained by :func:`fit`.

The objective is :class:`brainuad.models.masked_autoencoder.MaskedAutoencoder`; this module sets the
loop up as SparK's public config does (AdamW, weight decay 0.05, betas (0.9, 0.95)) and keeps the
encoder of the best checkpoint. The state under ``workdir`` makes it resumable like model training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.masked_autoencoder import MaskedAutoencoder
from .loop import TrainSettings, _atomic_save, fit

#: registry name of the objective in the loop's fingerprint and checkpoint
OBJECTIVE = "masked_autoencoder"


def _build_objective(arch: str, **hparams) -> MaskedAutoencoder:
    if arch != OBJECTIVE:
        raise KeyError(f"unknown pre-training objective {arch!r}; available: {OBJECTIVE}")
    return MaskedAutoencoder(**hparams)


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
    workdir: str | Path,
    progress: bool = True,
    val_every: int = 100,
    val_max_slices: int = 512,
    weight_decay: float = 0.05,
    decoder_dim: int = 128,
    amp: bool = True,
    stop_after_steps: int | None = None,
) -> dict:
    """Pre-train a :class:`~brainuad.models.encoder.ResNetEncoder` by masked image modelling on healthy slices.

    Parameters
    ----------
    train_volumes, val_volumes : ndarray (N, D, H, W)
        Healthy volumes in [0, 1]; H and W divisible by ``patch`` and by the encoder stride.
    encoder_hparams : dict
        :class:`~brainuad.models.encoder.ResNetEncoder` arguments (stored in the checkpoint).
    mask_ratio, patch, decoder_dim : float, int, int
        :class:`~brainuad.models.masked_autoencoder.MaskedAutoencoder` arguments.
    max_steps, batch_size, lr, val_every, val_max_slices, weight_decay, amp : see :class:`TrainSettings`
        AdamW steps, slices per step, ... (betas (0.9, 0.95) as SparK's public config).
    seed : int
        Seeds initialisation (``seed``), slice sampling (``seed + 1``), training masks (``seed + 2``)
        and the validation masks (``seed + 3``, the same at every validation).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    out_path : path
        Checkpoint ``{"encoder_hparams", "encoder_state_dict", "step", "val_loss", "mask_ratio",
        "patch"}`` of the step with the lowest masked validation loss, written atomically.
    out_log : path
        TSV with columns ``step, loss, val_loss, seconds`` (val_loss empty between validations).
    workdir : path
        Resumable state (see :func:`fit`); also holds the whole objective's checkpoint
        ``masked_autoencoder.pt`` (decoder included).
    progress : bool
        tqdm progress bar on stderr.
    stop_after_steps : int, optional
        Save the state and return after this many steps (see :func:`fit`).

    Returns
    -------
    dict: :func:`fit`'s ``status``, ``step``, ``best_val_loss``, ``best_step``. ``out_path`` is
    written when the status is ``"done"``.
    """
    settings = TrainSettings(max_steps=max_steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                             optimizer="adamw", betas=(0.9, 0.95), val_every=val_every,
                             val_max_slices=val_max_slices, seed=seed, amp=amp)
    hparams = {"encoder": dict(encoder_hparams), "mask_ratio": float(mask_ratio), "patch": int(patch),
               "decoder_dim": int(decoder_dim)}
    workdir = Path(workdir)
    objective_path = workdir / f"{OBJECTIVE}.pt"
    result = fit(OBJECTIVE, hparams, train_volumes, val_volumes, settings, out_model=objective_path, out_log=out_log,
                 workdir=workdir, device=device, progress=progress, stop_after_steps=stop_after_steps,
                 build_model=_build_objective)
    if result["status"] == "done":
        ckpt = torch.load(objective_path, map_location="cpu", weights_only=False)
        prefix = "encoder."
        encoder_state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
        _atomic_save({"encoder_hparams": dict(encoder_hparams), "encoder_state_dict": encoder_state,
                      "step": ckpt["step"], "val_loss": ckpt["val_loss"], "mask_ratio": float(mask_ratio),
                      "patch": int(patch)}, Path(out_path))
    return result

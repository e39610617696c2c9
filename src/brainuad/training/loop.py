"""One training loop for every trainable model.

Seeded, resumable from a state file under ``work/`` (model, optimiser, every RNG, step, best checkpoint
and loss log), with a progress bar, best-checkpoint selection by the healthy validation loss and a
per-step loss log (TSV). The final ``model.pt`` is written once, atomically. It trains anything with the
:class:`brainuad.models.base.Trainable` interface: the registered models and the masked pre-training
of the cDDPM encoder (:mod:`brainuad.training.pretrain`).

Data are the packed volumes (N, D, H, W); 2D models get batches of axial slices sampled uniformly
with replacement over all slices of all training volumes (as the thesis' public code does), 3D models
get batches of whole volumes.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..accel import amp_enabled, autocast, compile_forward, network_of, to_channels_last, to_device
from ..models import INIT_ONLY, build
from .augment import from_config as augment_from_config
from .erasing import from_config as erasing_from_config


@dataclass
class TrainSettings:
    """Hyper-parameters of the loop (every one comes from the config through ``params:``).

    Attributes
    ----------
    max_steps : int
        Optimiser steps.
    batch_size : int
        Slices (2D) or volumes (3D) per step.
    lr : float
        Learning rate.
    weight_decay : float
        Weight decay (L2 penalty for Adam, decoupled for AdamW).
    optimizer : {"adam", "adamw"}
        ``torch.optim.Adam`` (the models) or ``torch.optim.AdamW`` (the SSL pre-training).
    betas : (float, float)
        The optimiser's moment coefficients.
    val_every : int
        Validate (and maybe keep the best checkpoint) every this many steps, and at the end.
    val_max_slices : int
        Cap on validation slices (evenly spaced subset) to bound validation time; 0 = all.
    checkpoint_every_s : float
        Save the resumable state at least this often (seconds).
    seed : int
        Seeds the model initialisation, batch sampling and model noise.
    amp : bool or "always"
        Mixed precision (bfloat16 autocast): True = on CUDA only (ignored on CPU), "always" = on CPU
        too (:func:`brainuad.accel.amp_enabled`).
    grad_clip : float
        Clip the gradient norm to this value; 0 disables.
    augment : dict or None
        Training-time intensity augmentation (:mod:`brainuad.training.augment`): None = off; otherwise
        the :func:`~brainuad.training.augment.from_config` options, e.g. the thesis probabilities
        ``{"blur_p": 0.25, "bias_p": 0.25, "gamma_p": 0.5, "ghost_p": 0.5}``. Applied on the CPU to
        2D training batches only, drawing from the batch-sampling generator (resumes bit-identically).
    channels_last : bool
        Channels-last memory layout of the model (2D models; :func:`brainuad.accel.to_channels_last`).
    compile : bool or str
        ``torch.compile`` the network (a diffusion model's Unet, else the model); a string is the compile
        mode. Falls back to eager mode with a warning when compilation fails.
    data_on_device : bool
        Hold the training and validation volumes on the training device for the whole job and gather
        batches there (no per-step host-to-device copy); with ``augment`` the batches are built on the
        CPU and copied through pinned memory instead. Does not change any number.
    log_every : int
        Read the training losses back to the host every this many steps (and at every validation,
        state save and the end), so the GPU never waits for the host within those steps. The logged
        values are the same; a non-finite loss is reported at the next read-back. Does not change any
        number.
    erasing : dict or None
        Spatial erasing of the training *inputs* (:mod:`brainuad.training.erasing`, P8.1): None = off;
        otherwise the :class:`~brainuad.training.erasing.Eraser` fields, e.g. ``{"mode": "patch",
        "fill": "sample", "p": 0.5}``. Slices or volumes; the model must accept ``loss(..., target=)``
        (it is trained to reconstruct the un-erased batch). Draws from the batch-sampling generator.
    """

    max_steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    val_every: int = 100
    val_max_slices: int = 512
    checkpoint_every_s: float = 300.0
    seed: int = 3141
    amp: bool = True
    grad_clip: float = 0.0
    augment: dict | None = None
    erasing: dict | None = None
    channels_last: bool = False
    compile: bool | str = False
    data_on_device: bool = True
    log_every: int = 50


#: TrainSettings fields that change no number (left out of the resume fingerprint)
RUNTIME_ONLY = ("data_on_device", "log_every")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _batches_2d(volumes: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
    """Gather slices: volumes (N, D, H, W), idx (B, 2) of (volume, slice) -> (B, 1, H, W) float32."""
    arr = volumes[idx[:, 0].numpy(), idx[:, 1].numpy()]
    return torch.from_numpy(np.asarray(arr, dtype=np.float32)).unsqueeze(1)


def sample_batch(volumes, input_dims: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Draw one training batch uniformly with replacement.

    Parameters
    ----------
    volumes : ndarray (N, D, H, W), or a Tensor (N, D, H, W) on any device (the batch is gathered there)
    input_dims : 2 (slices) or 3 (volumes)
    batch_size : int
    generator : torch.Generator (CPU) — its state makes sampling resumable

    Returns
    -------
    Tensor (B, 1, H, W) for 2D or (B, 1, D, H, W) for 3D, float32 on CPU (on the tensor's device when
    ``volumes`` is a Tensor; the same values either way: indices are drawn on the CPU generator).
    """
    n, d = volumes.shape[:2]
    if input_dims == 2:
        vol = torch.randint(0, n, (batch_size,), generator=generator)
        sl = torch.randint(0, d, (batch_size,), generator=generator)
        if torch.is_tensor(volumes):
            return volumes[vol.to(volumes.device), sl.to(volumes.device)].float().unsqueeze(1)
        return _batches_2d(volumes, torch.stack([vol, sl], 1))
    vol = torch.randint(0, n, (batch_size,), generator=generator)
    if torch.is_tensor(volumes):
        return volumes[vol.to(volumes.device)].float().unsqueeze(1)
    return torch.from_numpy(np.asarray(volumes[vol.numpy()], dtype=np.float32)).unsqueeze(1)


def validation_batches(volumes, input_dims: int, batch_size: int, max_slices: int):
    """Yield deterministic validation batches (every slice, or an evenly spaced subset of ``max_slices``).

    ``volumes``: ndarray (N, D, H, W) (float32 CPU batches) or a Tensor (batches on its device).
    """
    n, d = volumes.shape[:2]
    on_tensor = torch.is_tensor(volumes)
    if input_dims == 3:
        for i in range(0, n, batch_size):
            if on_tensor:
                yield volumes[i : i + batch_size].float().unsqueeze(1)
            else:
                yield torch.from_numpy(np.asarray(volumes[i : i + batch_size], dtype=np.float32)).unsqueeze(1)
        return
    pairs = np.stack(np.meshgrid(np.arange(n), np.arange(d), indexing="ij"), -1).reshape(-1, 2)
    if max_slices and len(pairs) > max_slices:
        pairs = pairs[np.linspace(0, len(pairs) - 1, max_slices).round().astype(int)]
    for i in range(0, len(pairs), batch_size):
        idx = torch.from_numpy(pairs[i : i + batch_size])
        if on_tensor:
            idx = idx.to(volumes.device)
            yield volumes[idx[:, 0], idx[:, 1]].float().unsqueeze(1)
        else:
            yield _batches_2d(volumes, idx)


class _StopFlag:
    """Turns SIGTERM / SIGUSR1 (SLURM's warning before the time limit) into a save-and-stop request."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def data_digest(*arrays: np.ndarray) -> str:
    """BLAKE2b digest of the dtype, shape and bytes of ``arrays`` (the training and validation volumes).

    Part of the resume fingerprint of :func:`fit`: a state saved on other data (e.g. a new split with the same
    subject counts) is never resumed. Hashes at memory speed (about 1 s per GB).
    """
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state(sample_gen: torch.Generator, model_gen: torch.Generator) -> dict:
    state = {"sample": sample_gen.get_state(), "model": model_gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _optimizer(settings: TrainSettings, params) -> torch.optim.Optimizer:
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if settings.optimizer not in kinds:
        raise ValueError(f"optimizer must be one of {sorted(kinds)}, got {settings.optimizer!r}")
    return kinds[settings.optimizer](params, lr=settings.lr, weight_decay=settings.weight_decay,
                                     betas=tuple(settings.betas))


def _generator_device(model, device: torch.device) -> torch.device:
    """Device of the generator passed to ``model.loss`` (its declared ``random_device``)."""
    return device if model.random_device == "model" else torch.device("cpu")


def validation_loss(model, volumes, settings: TrainSettings, device: torch.device) -> float:
    """Mean healthy validation loss, the criterion that selects the best checkpoint.

    Parameters
    ----------
    model : Trainable nn.Module on ``device`` (left in train mode afterwards)
    volumes : ndarray (N, D, H, W), or a Tensor (N, D, H, W) already on ``device``
    settings : TrainSettings
        ``batch_size``, ``val_max_slices`` (see :func:`validation_batches`), ``amp`` and ``seed``: the
        loss draws its randomness from a generator seeded ``seed + 3`` for every call, so every
        validation sees the same noise (or masks).
    device : torch.device

    Returns
    -------
    float: ``sum_b B_b * loss_b / sum_b B_b`` over the validation batches b.
    """
    device = torch.device(device)
    use_amp = amp_enabled(settings.amp, device)
    model.eval()
    gen = torch.Generator(device=_generator_device(model, device)).manual_seed(settings.seed + 3)
    losses, sizes = [], []
    with torch.no_grad():
        for batch in validation_batches(volumes, model.input_dims, settings.batch_size, settings.val_max_slices):
            batch = _layout(to_device(batch, device), settings, model)
            with autocast(device, use_amp):
                losses.append(model.loss(batch, generator=gen).detach().float())
            sizes.append(batch.shape[0])
    model.train()
    # one read-back; summed on the host in batch order (the same float64 sum as a per-batch float())
    values = torch.stack(losses).tolist() if losses else []
    total = 0.0
    for value, size in zip(values, sizes):
        total += value * size
    return total / max(sum(sizes), 1)


def _layout(batch: torch.Tensor, settings: TrainSettings, model) -> torch.Tensor:
    """Channels-last input for a channels-last 2D model (the values are unchanged)."""
    if settings.channels_last and batch.dim() == 4:
        return batch.contiguous(memory_format=torch.channels_last)
    return batch


def fit(
    arch: str,
    hparams: dict,
    train_volumes: np.ndarray,
    val_volumes: np.ndarray,
    settings: TrainSettings,
    *,
    out_model: str | Path,
    out_log: str | Path,
    workdir: str | Path,
    device: str = "auto",
    progress: bool = True,
    stop_after_steps: int | None = None,
    build_model: Callable[..., torch.nn.Module] = build,
) -> dict:
    """Train model ``arch`` and write the best checkpoint to ``out_model``.

    Parameters
    ----------
    arch : str
        Registry name of the model (see :func:`brainuad.models.build`).
    hparams : dict
        Model hyper-parameters.
    train_volumes, val_volumes : ndarray (N, D, H, W)
        Healthy training / validation volumes in [0, 1].
    settings : TrainSettings
    out_model : path
        Final checkpoint: ``{"arch", "hparams", "state_dict", "step", "val_loss", "settings"}``.
    out_log : path
        Loss log TSV with columns ``step, loss, val_loss, seconds``.
    workdir : path
        Folder for the resumable state (``state.pt``). A rerun with the same arguments resumes there;
        a state saved with different hyper-parameters, settings or data (:func:`data_digest`) is ignored.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    progress : bool
        Show a tqdm progress bar on stderr.
    stop_after_steps : int, optional
        Save the state and return after this many steps of the current run (as if the job had been
        pre-empted); used to test resumption. SIGTERM / SIGUSR1 do the same.
    build_model : callable ``(arch, **hparams) -> nn.Module``
        Resolves ``arch``: the model registry, or (:func:`brainuad.training.pretrain.pretrain_encoder`)
        a pre-training objective. The result must have the :class:`brainuad.models.base.Trainable`
        interface.

    Returns
    -------
    dict with ``status`` ("done" or "interrupted"), ``step``, ``best_val_loss``, ``best_step``.
    """
    from tqdm import tqdm

    dev = resolve_device(device)
    workdir = Path(workdir)
    state_path = workdir / "state.pt"
    if int(settings.log_every) < 1:
        raise ValueError(f"log_every must be >= 1, got {settings.log_every}")
    fingerprint = {"arch": arch, "hparams": hparams,
                   "settings": {k: v for k, v in asdict(settings).items() if k not in RUNTIME_ONLY},
                   "train_shape": list(train_volumes.shape), "val_shape": list(val_volumes.shape),
                   "data": data_digest(train_volumes, val_volumes)}

    torch.manual_seed(settings.seed)
    model = build_model(arch, **hparams).to(dev)
    if not model.trainable:
        raise ValueError(f"model {arch!r} is learning-free and has nothing to train")
    if getattr(model, "closed_form", False):
        return _fit_closed_form(model, arch, hparams, train_volumes, settings, Path(out_model), Path(out_log), t0=time.time())
    input_dims = model.input_dims
    augmenter = augment_from_config(settings.augment)
    if augmenter is not None and input_dims != 2:
        raise ValueError(f"settings.augment is implemented for 2D slice models only; {arch!r} takes 3D volumes")
    if input_dims == 2:
        to_channels_last(model, settings.channels_last)
    eraser = erasing_from_config(settings.erasing)
    if eraser is not None and not getattr(model, "accepts_target", False):
        raise ValueError(f"settings.erasing needs a model whose loss takes the un-erased target; {arch!r} does not")
    # a model may give its parameters learning rates of their own (EDC: encoder and decoder)
    opt = _optimizer(settings, model.param_groups(settings.lr) if hasattr(model, "param_groups") else model.parameters())
    use_amp = amp_enabled(settings.amp, dev)
    sample_gen = torch.Generator().manual_seed(settings.seed + 1)
    model_gen = torch.Generator(device=_generator_device(model, dev)).manual_seed(settings.seed + 2)
    step, best_val, best_step, best_state, log_rows = 0, math.inf, 0, None, []

    if state_path.exists():
        state = torch.load(state_path, map_location=dev, weights_only=False)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sample_gen.set_state(state["rng"]["sample"])
            model_gen.set_state(state["rng"]["model"])
            torch.set_rng_state(state["rng"]["torch"])
            if "cuda" in state["rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            step, best_val, best_step = state["step"], state["best_val"], state["best_step"]
            best_state, log_rows = state["best_state"], state["log"]

    def save_state():
        _atomic_save({"fingerprint": fingerprint, "model": model.state_dict(), "optimizer": opt.state_dict(),
                      "rng": _rng_state(sample_gen, model_gen), "step": step, "best_val": best_val,
                      "best_step": best_step, "best_state": best_state, "log": log_rows}, state_path)

    # the data: on the device once for the whole job, or CPU batches copied through pinned memory
    on_device = settings.data_on_device and augmenter is None and eraser is None  # both draw on the CPU
    train_data = torch.from_numpy(np.ascontiguousarray(train_volumes)).to(dev) if on_device else train_volumes
    val_data = torch.from_numpy(np.ascontiguousarray(val_volumes)).to(dev) if settings.data_on_device else val_volumes
    compile_forward(network_of(model), settings.compile)
    pending: list[tuple[dict, torch.Tensor]] = []  # log rows whose loss is still on the device

    def flush():
        """Read the pending losses back in one transfer; raise on the first non-finite one."""
        if not pending:
            return
        values = torch.stack([loss for _, loss in pending]).tolist()
        for (row, _), value in zip(pending, values):
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at step {row['step'] - 1}; "
                                         "lower the learning rate")
            row["loss"] = value
        pending.clear()

    t0, last_save, steps_this_run = time.time(), time.time(), 0
    status = "done"
    model.train()
    with _StopFlag() as stop, tqdm(total=settings.max_steps, initial=step, disable=not progress,
                                   mininterval=5.0, desc=f"train {arch}") as bar:
        while step < settings.max_steps:
            batch = sample_batch(train_data, input_dims, settings.batch_size, sample_gen)
            if augmenter is not None:
                batch = augmenter(batch, sample_gen)
            erased = eraser(batch, sample_gen) if eraser is not None else None  # input only, on the CPU batch
            batch = _layout(to_device(batch, dev), settings, model)
            with autocast(dev, use_amp):
                if erased is None:
                    loss = model.loss(batch, generator=model_gen)
                else:
                    loss = model.loss(_layout(to_device(erased, dev), settings, model), generator=model_gen,
                                      target=batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            opt.step()
            step += 1
            steps_this_run += 1
            row = {"step": step, "loss": None, "val_loss": "", "seconds": round(time.time() - t0, 3)}
            pending.append((row, loss.detach().float()))
            validate = step % settings.val_every == 0 or step == settings.max_steps
            if validate or step % settings.log_every == 0:
                flush()
            if validate:
                val = validation_loss(model, val_data, settings, dev)
                row["val_loss"] = val
                if val < best_val:
                    best_val, best_step = val, step
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{val:.4f}")
            log_rows.append(row)
            bar.update(1)
            interrupted = stop.requested or (stop_after_steps is not None and steps_this_run >= stop_after_steps)
            if interrupted or time.time() - last_save > settings.checkpoint_every_s:
                flush()
                save_state()
                last_save = time.time()
            if interrupted and step < settings.max_steps:
                status = "interrupted"
                break

    flush()
    if status == "done":
        if best_state is None:
            best_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        _atomic_save({"arch": arch, "hparams": hparams, "state_dict": best_state, "step": best_step,
                      "val_loss": best_val, "settings": asdict(settings)}, Path(out_model))
        _write_log(log_rows, Path(out_log))
        save_state()
    return {"status": status, "step": step, "best_val_loss": best_val, "best_step": best_step}


def _fit_closed_form(model, arch: str, hparams: dict, train_volumes: np.ndarray, settings: TrainSettings,
                     out_model: Path, out_log: Path, t0: float) -> dict:
    """Fit a model with ``closed_form = True`` (the covariance model): ``model.fit_reference(train_volumes)``,
    no gradient steps; the checkpoint has the same keys as a trained model's (step 0, no validation loss)
    and the log one row."""
    model.fit_reference(train_volumes)
    _atomic_save({"arch": arch, "hparams": hparams, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                  "step": 0, "val_loss": math.nan, "settings": asdict(settings)}, out_model)
    _write_log([{"step": 0, "loss": "", "val_loss": "", "seconds": round(time.time() - t0, 3)}], out_log)
    return {"status": "done", "step": 0, "best_val_loss": math.nan, "best_step": 0}


def _write_log(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["step", "loss", "val_loss", "seconds"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def load_model(path: str | Path, device: str = "auto") -> torch.nn.Module:
    """Rebuild a model from a ``model.pt`` written by :func:`fit`, in eval mode on ``device``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hparams = {k: v for k, v in ckpt["hparams"].items() if k not in INIT_ONLY}
    model = build(ckpt["arch"], **hparams)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(resolve_device(device)).eval()

"""Run a model over whole volumes and keep what scoring needs.

2D models get the slice stack of one volume as a batch (in chunks of ``batch_size`` slices);
3D models get whole volumes. Reconstruction models store ``samples`` reconstructions per volume;
map-producing models (feature-based, learning-free) store their anomaly map. :func:`timed_run_model`
also measures the seconds per volume on the hardware it names; :func:`save_outputs` writes the
``results/recon/...npz`` file the scoring reads.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


def set_attributes(model, attributes: dict, name: str = "model"):
    """Apply test-time switches (``reconstruct.attributes``, e.g. a cDDPM's ``encoder_crop``) to ``model``.

    Raises ValueError naming the key when the model has no such attribute (a typo would otherwise be a
    silent no-op). Returns the model.
    """
    for key, value in (attributes or {}).items():
        if not hasattr(model, key):
            raise ValueError(f"reconstruct.attributes.{key}: {name} has no attribute {key!r}")
        setattr(model, key, value)
    return model


def inference_model(checkpoint: str | Path | None, arch: str, hparams: dict, device: torch.device, *,
                    channels_last: bool = False, compile=False):
    """The model a reconstruct job runs, in eval mode on ``device``.

    Parameters
    ----------
    checkpoint : path or None
        ``model.pt`` of a trained model; None for a learning-free model, built from ``hparams``.
    arch : str
        Registry name (used when ``checkpoint`` is None).
    hparams : dict
    device : torch.device
    channels_last, compile
        The ``performance`` switches (:func:`brainuad.accel.prepare`).
    """
    from .accel import prepare
    from .models import build
    from .training import load_model

    model = load_model(checkpoint, device) if checkpoint else build(arch, **hparams).to(device).eval()
    return prepare(model, channels_last=channels_last, compile=compile)


def evaluation_subjects(splits: dict, role: str, fold: int) -> tuple[list, list]:
    """(validation, test) subjects a reconstruct job covers.

    Parameters
    ----------
    splits : dict
        A ``results/splits/{dataset}.json``.
    role : str
        The dataset's role: ``"healthy"`` uses the fold's healthy validation set (for healthy-FPR
        thresholds); any other role its own validation set.
    fold : int
    """
    if role == "healthy":
        return list(splits["folds"][fold]["val"]), list(splits["test"])
    return list(splits["val"]), list(splits["test"])


@torch.no_grad()
def run_model(model, images: np.ndarray, masks: np.ndarray, *, samples: int = 1, noise_level=None,
              batch_size: int = 64, seed: int = 0, device: torch.device | str = "cpu", amp=False,
              memory_mb: float = 0) -> np.ndarray:
    """Reconstruct (or map) every volume.

    Parameters
    ----------
    model : nn.Module from :func:`brainuad.models.build`, in eval mode on ``device``
    images, masks : ndarray (N, D, H, W)
    samples : int
        Reconstructions per volume (S); ignored for map-producing models.
    noise_level : optional
        Passed to ``model.reconstruct`` (diffusion models: t_test or a list of them).
    batch_size : int
        Slices per forward pass for 2D models. Diffusion models get the whole slice stack of a volume
        (one noise field per sample and level for the whole volume, whatever the batch size) and
        evaluate all samples x levels x slices in network calls of ``batch_size`` images (pDDPM: its
        ``chunk_size``), or as many as ``memory_mb`` allows.
    seed : int
        Seeds a ``torch.Generator`` on the device, so stochastic models are reproducible.
    amp : bool or "always"
        bfloat16 autocast (:func:`brainuad.accel.amp_enabled`: True = on CUDA only).
    memory_mb : float
        Activation budget of one network call of a diffusion model (MiB, its
        ``images_per_call``); 0 = use ``batch_size``.

    Returns
    -------
    ndarray float16: (S, N, D, H, W) reconstructions, or (N, D, H, W) maps when
    ``model.produces == "map"``; a ``"recon_map"`` model (SADM Stage II) returns the tuple
    (reconstructions, maps).
    """
    from .accel import amp_enabled, autocast, to_device

    device = torch.device(device)
    use_amp = amp_enabled(amp, device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    if model.produces == "recon_map":
        return _run_recon_map(model, images, masks, samples, noise_level, batch_size, gen, device, use_amp)
    maps = model.produces == "map"
    batched = not maps and model.input_dims == 2 and hasattr(model, "images_per_call")
    if batched:
        per_call = (model.images_per_call(memory_mb, 2 if use_amp else 4) if memory_mb
                    else getattr(model, "chunk_size", None) or batch_size)
    n = images.shape[0]
    out = np.zeros(((n,) if maps else (samples, n)) + images.shape[1:], dtype=np.float16)
    with autocast(device, use_amp):
        _run(model, images, masks, out, samples, noise_level, batch_size, gen, device, maps,
             per_call if batched else None, to_device)
    return out


def _run_recon_map(model, images, masks, samples, noise_level, batch_size, gen, device, use_amp):
    """:func:`run_model` of a ``"recon_map"`` 2D model: slice chunks through ``reconstruct_and_map``."""
    from .accel import autocast, to_device

    n = images.shape[0]
    recons = np.zeros((samples, n) + images.shape[1:], dtype=np.float16)
    maps = np.zeros(images.shape, dtype=np.float16)
    with autocast(device, use_amp):
        for i in range(n):
            x = to_device(torch.from_numpy(np.asarray(images[i], dtype=np.float32)), device)
            m = to_device(torch.from_numpy(np.asarray(masks[i] > 0)), device)
            for j in range(0, x.shape[0], batch_size):
                rec, amap = model.reconstruct_and_map(x[j : j + batch_size, None], m[j : j + batch_size, None],
                                                      noise_level=noise_level, samples=samples, generator=gen)
                recons[:, i, j : j + batch_size] = rec[:, :, 0].float().cpu().numpy()
                maps[i, j : j + batch_size] = amap[:, 0].float().cpu().numpy()
    return recons, maps


def _run(model, images, masks, out, samples, noise_level, batch_size, gen, device, maps, per_call, to_device):
    """The volume loop of :func:`run_model` (``per_call``: images per call of a batched diffusion model)."""
    for i in range(images.shape[0]):
        x = to_device(torch.from_numpy(np.asarray(images[i], dtype=np.float32)), device)
        m = to_device(torch.from_numpy(np.asarray(masks[i] > 0)), device)
        if per_call is not None:  # every sample x level x slice of the volume in batched network calls
            rec = model.reconstruct(x[:, None], m[:, None], noise_level=noise_level, samples=samples, generator=gen,
                                    max_images=per_call)
            out[:, i] = rec[:, :, 0].float().cpu().numpy()
            continue
        if model.input_dims == 3:
            xb, mb = x[None, None], m[None, None]
            if maps:
                out[i] = model.anomaly_map(xb, mb)[0, 0].float().cpu().numpy()
            else:
                rec = model.reconstruct(xb, mb, noise_level=noise_level, samples=samples, generator=gen)
                out[:, i] = rec[:, 0, 0].float().cpu().numpy()
            continue
        for j in range(0, x.shape[0], batch_size):
            xb, mb = x[j : j + batch_size, None], m[j : j + batch_size, None]
            if maps:
                out[i, j : j + batch_size] = model.anomaly_map(xb, mb)[:, 0].float().cpu().numpy()
            else:
                rec = model.reconstruct(xb, mb, noise_level=noise_level, samples=samples, generator=gen)
                out[:, i, j : j + batch_size] = rec[:, :, 0].float().cpu().numpy()


def hardware_name(device: torch.device | str) -> str:
    """The GPU's name, or ``"CPU (<processor>, <n> thread(s))"`` (the intra-op threads torch uses)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s))"


@dataclass(frozen=True)
class TimedOutput:
    """What :func:`timed_run_model` returns.

    Attributes
    ----------
    output : ndarray float16
        :func:`run_model`'s result: (S, N, D, H, W) reconstructions or (N, D, H, W) maps.
    key : {"recons", "maps"}
        What ``output`` holds (the model's ``produces``).
    maps : ndarray float16 or None
        (N, D, H, W) maps a ``"recon_map"`` model produces beside its reconstructions (``output``).
    seconds_per_volume : float
        Wall-clock seconds of :func:`run_model` divided by N (CUDA synchronised before and after).
    hardware : str
        :func:`hardware_name` of the device.
    """

    output: np.ndarray
    key: str
    seconds_per_volume: float
    hardware: str
    maps: np.ndarray | None = None


def timed_run_model(model, images: np.ndarray, masks: np.ndarray, *, device: torch.device | str = "cpu",
                    **kwargs) -> TimedOutput:
    """:func:`run_model`, timed: the inference-time figures of the tables.

    Parameters
    ----------
    model, images, masks, device
        As :func:`run_model`.
    **kwargs
        ``samples``, ``noise_level``, ``batch_size``, ``seed`` of :func:`run_model`.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = run_model(model, images, masks, device=device, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - t0) / max(len(images), 1)
    if model.produces == "recon_map":
        return TimedOutput(out[0], "recons", seconds, hardware_name(device), maps=out[1])
    return TimedOutput(out, "maps" if model.produces == "map" else "recons", seconds, hardware_name(device))


def save_outputs(path: str | Path, run: TimedOutput, val: list, test: list, samples: int) -> None:
    """Write a reconstruct job's npz: ``recons`` or ``maps`` (both for a ``"recon_map"`` model), ``subjects``
    (val then test), ``split`` ("val" / "test" per subject), ``seconds_per_volume``, ``samples`` and
    ``hardware``."""
    extra = {} if run.maps is None else {"maps": run.maps}
    np.savez(path, **{run.key: run.output}, **extra, subjects=np.asarray(list(val) + list(test)),
             split=np.asarray(["val"] * len(val) + ["test"] * len(test)),
             seconds_per_volume=np.float64(run.seconds_per_volume), samples=np.int64(samples),
             hardware=np.asarray(run.hardware))


def reconstruct_jobs(jobs: list[dict], *, arch: str, hparams: dict, settings: dict, seed: int,
                     device: torch.device | str, log=None) -> None:
    """Reconstruct (or map) the evaluation volumes of one or more (fold, dataset) pairs of one model and
    write one ``results/recon/...npz`` per pair (:func:`save_outputs`).

    One process runs them all (config ``jobs.reconstruct: per_model``), so the interpreter, torch and the
    model code are loaded once; each fold's weights and each dataset's pack are loaded once. Every pair gets
    exactly what a job of its own would compute: the same subjects, settings and seed (``seed + fold``).

    Parameters
    ----------
    jobs : list of dict
        ``{"fold", "role", "model_file" (None: learning-free), "volumes", "splits", "output"}`` per pair.
    arch, hparams, settings
        Registry name, hyper-parameters and reconstruct settings of the model (the rule's params).
    seed : int
        The run's seed; a pair draws its noise from ``seed + fold``.
    device : torch.device or str
    log : logging.Logger, optional
    """
    from .data.pack import load_pack, subject_index
    from .utils import read_json

    device = torch.device(device)
    models, packs = {}, {}
    for job in jobs:
        fold = int(job["fold"])
        if fold not in models:
            models = {fold: set_attributes(
                inference_model(job["model_file"], arch, hparams, device,
                                channels_last=settings.get("channels_last", False), compile=settings.get("compile", False)),
                settings.get("attributes"), f"model {arch!r}")}  # one fold's weights in memory at a time
        if job["volumes"] not in packs:
            packs[job["volumes"]] = load_pack(job["volumes"])
        pack = packs[job["volumes"]]
        val, test = evaluation_subjects(read_json(job["splits"]), job["role"], fold)
        idx = subject_index(pack, val + test)
        run = timed_run_model(models[fold], pack["images"][idx], pack["masks"][idx], samples=settings["samples"],
                              noise_level=settings.get("noise_level"), batch_size=settings["batch_size"],
                              seed=seed + fold, device=device, amp=settings.get("amp", False),
                              memory_mb=settings.get("memory_mb", 0))
        save_outputs(job["output"], run, val, test, settings["samples"])
        if log:
            log.info("%s: %s %s for %d subjects on %s: %.3f s per volume", job["output"], run.key, run.output.shape,
                     len(val) + len(test), run.hardware, run.seconds_per_volume)

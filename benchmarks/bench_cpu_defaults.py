"""The GPU fast paths must not slow the CPU: eager (every switch off) vs the CPU defaults, in one run.

Demo-size models (config/config.yaml: 64 x 64 slices, 32 per volume; Unet [16, 32] x 1; AE/VAE
[16, 32, 64, 64]) on synthetic volumes, the two settings alternated ``--rounds`` times so load on a
shared machine hits both alike; the median times and the ratio eager / defaults are printed (> 1: the
defaults are faster).

* training (``brainuad.training.fit``, 2 models): eager = ``data_on_device: false, log_every: 1`` (a
  numpy gather and a host read-back of the loss every step, the loop before the fast paths); defaults =
  ``TrainSettings()`` (data as a tensor, losses read back every 50 steps). amp, channels-last and compile
  are off on the CPU either way (``train_amp: true`` means CUDA only).
* reconstruction (``brainuad.inference.run_model``, cDDPM with 10 samples and ENS): eager = one
  network call per sample and noise level (the per-sample loop, ``samples=1`` calls); defaults = the
  batched path (all samples x levels x slices in calls of ``reconstruct.batch_size`` images).

    PYTHONPATH=src python benchmarks/bench_cpu_defaults.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from brainuad.inference import run_model
from brainuad.models import build
from brainuad.training import TrainSettings, fit

UNET = {"image_size": [64, 64], "channels": [16, 32], "res_blocks": 1}
CDDPM = {**UNET, "context_dim": 32, "encoder_channels": [8, 16, 32], "encoder_blocks": [1, 1, 1]}
AE = {"image_size": [64, 64], "channels": [16, 32, 64, 64], "latent_dim": 128}


def volumes(n, seed=0):
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    v = np.stack([gaussian_filter(rng.random((32, 64, 64)), 2) for _ in range(n)])
    v = (v - v.min()) / (v.max() - v.min())
    return v.astype(np.float16), np.ones(v.shape, np.uint8)


def time_fit(arch, hp, train, val, settings) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(arch, hp, train, val, settings, out_model=f"{tmp}/m.pt", out_log=f"{tmp}/l.tsv", workdir=f"{tmp}/w",
            device="cpu", progress=False)
        return time.perf_counter() - t0


def looped(model, vols, masks, samples, levels, batch_size):
    """The per-sample loop: one run_model call per sample and level (each a network call per chunk)."""
    for _ in range(samples):
        for t in levels:
            run_model(model, vols, masks, samples=1, noise_level=t, batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--volumes", type=int, default=2)
    args = ap.parse_args()
    vols, masks = volumes(6)
    print(f"CPU, {torch.get_num_threads()} torch threads; demo-size models; {args.rounds} alternating rounds")
    timings: dict[str, dict[str, list[float]]] = {}

    def record(name, setting, sec):
        timings.setdefault(name, {}).setdefault(setting, []).append(sec)
        print(f"  {name} {setting}: {sec:.2f} s", flush=True)  # progress (a loaded machine is slow)

    for _ in range(args.rounds):
        for arch, hp, batch in (("ae", AE, 32), ("cddpm", CDDPM, 16)):
            common = dict(max_steps=args.steps, batch_size=batch, val_every=args.steps, val_max_slices=64)
            record(f"train {arch} ({args.steps} steps)", "eager",
                   time_fit(arch, hp, vols[:4], vols[4:], TrainSettings(**common, data_on_device=False, log_every=1)))
            record(f"train {arch} ({args.steps} steps)", "defaults",
                   time_fit(arch, hp, vols[:4], vols[4:], TrainSettings(**common)))
        torch.manual_seed(0)
        model = build("cddpm", **CDDPM).eval()
        levels = [250, 500, 750]
        t0 = time.perf_counter()
        n, label = args.volumes, f"reconstruct cddpm {args.samples} samples x ENS ({args.volumes} vol)"
        looped(model, vols[:n], masks[:n], args.samples, levels, 64)
        record(label, "eager", time.perf_counter() - t0)
        t0 = time.perf_counter()
        run_model(model, vols[:n], masks[:n], samples=args.samples, noise_level=levels, batch_size=64)
        record(label, "defaults", time.perf_counter() - t0)
    print(f"{'':<48}{'eager s':>9}{'defaults s':>11}{'eager/defaults':>16}")
    ratios = []
    for name, t in timings.items():
        e, d = statistics.median(t["eager"]), statistics.median(t["defaults"])
        ratios.append(e / d)
        print(f"{name:<48}{e:>9.2f}{d:>11.2f}{e / d:>16.2f}")
    print(f"CPU defaults vs eager: geometric mean ratio {float(np.exp(np.mean(np.log(ratios)))):.2f} "
          "(>= 1: the switches do not slow the CPU path)")


if __name__ == "__main__":
    main()

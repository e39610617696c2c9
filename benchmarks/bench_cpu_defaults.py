"""The GPU fast paths must not slow the CPU: eager (every switch off) vs the CPU defaults, in one run.

Demo-size models (config/config.yaml: 64 x 64 slices, 32 per volume; Unet [16, 32] x 1; AE/VAE
[16, 32, 64, 64]) on synthetic volumes, with the demo jobs' torch threads (``--threads``, default 1: every
demo job runs with ``threads: 1``). The settings alternate ``--rounds`` times and each figure is the
minimum CPU seconds (``time.process_time``) of the rounds: on a shared 2-core machine wall seconds swing
by 10x while one thread's CPU seconds stay within a few per cent; the wall-clock medians are printed too.

* training (``brainuad.training.fit``, 2 models): eager = ``data_on_device: false, log_every: 1`` (a
  numpy gather and a host read-back of the loss every step, the loop before the fast paths); defaults =
  ``TrainSettings()`` (data as a tensor, losses read back every 50 steps). amp, channels-last and compile
  are off on the CPU either way (``train_amp: true`` means CUDA only).
* reconstruction (``brainuad.inference.run_model``, cDDPM with 10 samples and ENS): eager = one
  network call per sample and noise level (the per-sample loop, ``samples=1`` calls); defaults = the
  batched path (all samples x levels x slices in calls of ``reconstruct.batch_size`` images), both with
  the demo's ``reconstruct.batch_size`` (``--batch-size``, 16).
* call size: the batched path with 64 images per call (the demo's value before this benchmark) against
  ``--batch-size``. On a CPU the cost per image grows with the call size (the activations of a large
  call fall out of the cache), so a large ``batch_size`` that helps a GPU slows a CPU.

    PYTHONPATH=src python benchmarks/bench_cpu_defaults.py [--rounds 3] [--threads 1] [--batch-size 16]
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
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (demo jobs: 1)")
    ap.add_argument("--batch-size", type=int, default=16, help="reconstruct.batch_size (the demo's)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vols, masks = volumes(6)
    print(f"CPU, {torch.get_num_threads()} torch thread(s); demo-size models; {args.rounds} alternating rounds")
    timings: dict[str, dict[str, list[tuple[float, float]]]] = {}

    def timed(name, setting, fn):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        timings.setdefault(name, {}).setdefault(setting, []).append((cpu, wall))
        print(f"  {name} {setting}: {cpu:.2f} CPU s, {wall:.2f} wall s", flush=True)  # progress

    bs, n = args.batch_size, args.volumes
    for _ in range(args.rounds):
        for arch, hp, batch in (("ae", AE, 32), ("cddpm", CDDPM, 16)):
            common = dict(max_steps=args.steps, batch_size=batch, val_every=args.steps, val_max_slices=64)
            timed(f"train {arch} ({args.steps} steps)", "eager",
                  lambda: time_fit(arch, hp, vols[:4], vols[4:], TrainSettings(**common, data_on_device=False,
                                                                                 log_every=1)))
            timed(f"train {arch} ({args.steps} steps)", "defaults",
                  lambda: time_fit(arch, hp, vols[:4], vols[4:], TrainSettings(**common)))
        torch.manual_seed(0)
        model = build("cddpm", **CDDPM).eval()
        levels = [250, 500, 750]
        label = f"reconstruct cddpm {args.samples} samples x ENS ({n} vol, {bs}/call)"
        timed(label, "eager", lambda: looped(model, vols[:n], masks[:n], args.samples, levels, bs))
        timed(label, "defaults", lambda: run_model(model, vols[:n], masks[:n], samples=args.samples,
                                                   noise_level=levels, batch_size=bs))
        timed(f"batched reconstruct, 64 vs {bs} images per call", "eager",
              lambda: run_model(model, vols[:n], masks[:n], samples=args.samples, noise_level=levels, batch_size=64))
        timed(f"batched reconstruct, 64 vs {bs} images per call", "defaults",
              lambda: run_model(model, vols[:n], masks[:n], samples=args.samples, noise_level=levels, batch_size=bs))
    print(f"{'':<52}{'eager':>8}{'defaults':>9}{'ratio':>7}{'wall ratio':>12}")
    print(f"{'':<52}{'CPU s':>8}{'CPU s':>9}{'(CPU)':>7}{'(medians)':>12}")
    ratios = []
    for name, t in timings.items():
        e, d = min(c for c, _ in t["eager"]), min(c for c, _ in t["defaults"])
        ew, dw = statistics.median(w for _, w in t["eager"]), statistics.median(w for _, w in t["defaults"])
        if not name.startswith("batched"):
            ratios.append(e / d)
        print(f"{name:<52}{e:>8.2f}{d:>9.2f}{e / d:>7.2f}{ew / dw:>12.2f}")
    print(f"CPU defaults vs eager (first three rows): geometric mean CPU-seconds ratio "
          f"{float(np.exp(np.mean(np.log(ratios)))):.2f} (>= 1: the switches do not slow the CPU path); "
          f"last row: > 1 = {bs} images per call beat 64 on this CPU")


if __name__ == "__main__":
    main()

"""2D vs 3D VAE of P8.1 on the same volumes: seconds per training step and per reconstructed volume.

Trains ``vae2d_p81`` (batches of axial slices) and ``vae3d`` (batches of whole volumes) with the training
loop (:func:`brainuad.training.fit`, cube/patch erasing with fill "sample" on, as in 3D-Cube-n / 2D-Patch-n),
then reconstructs the volumes with :func:`brainuad.inference.run_model` (2D: the slice stack in chunks
of ``--recon-batch`` slices; 3D: one volume per forward pass), and prints one line per model plus the
3D / 2D ratios, all from one run. Synthetic smooth volumes stand in for data.

    PYTHONPATH=src python benchmarks/bench_vae_3d.py [--shape 64 64 64] [--steps 10] [--batch 32]
        [--batch-3d 32] [--channels 32 64 128 256] [--volumes 4] [--device auto] [--threads N]

Defaults are the thesis' P8.1 sizes (64^3 volumes, channels [32, 64, 128, 256], latent 128 / 512, batch 32);
on a CPU use e.g. ``--steps 3 --batch-3d 4``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu import synthetic_volumes  # noqa: E402

from brainuad.inference import hardware_name, run_model  # noqa: E402
from brainuad.training import TrainSettings, fit, load_model, resolve_device  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(arch: str, hparams: dict, vols, masks, steps: int, batch: int, device: torch.device,
          recon_batch: int) -> tuple[float, float]:
    """(seconds per training step, seconds per reconstructed volume) of one model."""
    settings = TrainSettings(max_steps=steps + 1, batch_size=batch, lr=1e-3, val_every=10**9, val_max_slices=1,
                             checkpoint_every_s=1e9, seed=0, erasing={"mode": "patch", "fill": "sample", "p": 0.5})
    with tempfile.TemporaryDirectory() as tmp:
        fit(arch, hparams, vols, vols[:1], settings, out_model=f"{tmp}/model.pt", out_log=f"{tmp}/log.tsv",
            workdir=f"{tmp}/work", progress=False, device=str(device))
        # the loop logs the seconds since its start after every step: the median step time, first step excluded
        seconds = np.loadtxt(f"{tmp}/log.tsv", delimiter="\t", skiprows=1, usecols=3, ndmin=1)
        per_step = float(np.median(np.diff(seconds)))
        model = load_model(f"{tmp}/model.pt", str(device))
    run_model(model, vols[:1], masks[:1], batch_size=recon_batch, device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    run_model(model, vols, masks, batch_size=recon_batch, device=device)
    _sync(device)
    return per_step, (time.perf_counter() - t0) / len(vols)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 64, 64], help="D H W of the volumes")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32, help="slices per 2D training step")
    ap.add_argument("--batch-3d", type=int, default=32, help="volumes per 3D training step")
    ap.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--volumes", type=int, default=4, help="volumes to reconstruct (and train on)")
    ap.add_argument("--recon-batch", type=int, default=64, help="slices per 2D forward pass at inference")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    vols, masks = synthetic_volumes(max(args.volumes, 2), tuple(args.shape))
    d, h, w = args.shape
    print(f"# {hardware_name(device)}; volumes {d}x{h}x{w}; channels {args.channels}; {args.steps} timed steps; "
          f"2D batch {args.batch} slices, 3D batch {args.batch_3d} volumes; erasing patch/cube -n")
    res = {}
    for arch, hp, batch in (("vae2d_p81", {"image_size": [h, w], "channels": args.channels, "latent_dim": 128}, args.batch),
                            ("vae3d", {"image_size": [d, h, w], "channels": args.channels, "latent_dim": 512}, args.batch_3d)):
        res[arch] = bench(arch, hp, vols, masks, args.steps, batch, device, args.recon_batch)
        print(f"{arch:10s} train {res[arch][0]:.4f} s/step   reconstruct {res[arch][1]:.4f} s/volume")
    (s2, r2), (s3, r3) = res["vae2d_p81"], res["vae3d"]
    print(f"3D / 2D: {s3 / s2:.2f}x seconds per training step, {r3 / r2:.2f}x seconds per reconstructed volume; "
          f"per training sample (slice vs volume): {s3 / args.batch_3d / (s2 / args.batch):.1f}x")


if __name__ == "__main__":
    main()

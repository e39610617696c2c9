"""Brief GPU (or CPU) throughput check: train and reconstruct the thesis-size models, then score.

Models: ae, vae, and the diffusion models anoddpm, pddpm (48 px patches), cddpm at thesis size (Unet
channels [128, 256, 256], 3 res blocks); diffusion models also with ENS, and the cDDPM inference time
relative to pDDPM and AnoDDPM (thesis: about 37 % faster / 2 % slower).

Prints steps per second of training, volumes per second of reconstruction (96 x 96 x 50 volumes, the
whole slice stack as one batch) and volumes per second of every registered score, all from one run.
Synthetic smooth volumes stand in for data (throughput does not depend on content).

    PYTHONPATH=src python benchmarks/bench_gpu.py [--steps 300] [--volumes 40] [--device auto] [--models ...] [--tiny]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from brainuad.inference import run_model
from brainuad.scoring import available, score
from brainuad.training import TrainSettings, fit, load_model, resolve_device


def synthetic_volumes(n: int, shape=(50, 96, 96), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random 'brains': an ellipsoid mask filled with low-frequency texture, (n, D, H, W)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    d, h, w = shape
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    mask = ((zz / 0.9) ** 2 + (yy / 0.8) ** 2 + (xx / 0.7) ** 2 < 1).astype(np.uint8)
    vols = np.stack([gaussian_filter(rng.random(shape), 3) for _ in range(n)])
    vols = (vols - vols.min()) / (vols.max() - vols.min()) * mask
    return vols.astype(np.float16), np.repeat(mask[None], n, 0)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--volumes", type=int, default=40)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--samples", type=int, default=10, help="reconstructions per volume for multi-sample scores")
    ap.add_argument("--models", nargs="+", default=["ae", "vae", "anoddpm", "pddpm", "cddpm"])
    ap.add_argument("--tiny", action="store_true", help="tiny diffusion Unets (a CPU check that the script runs)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}")
    vols, masks = synthetic_volumes(args.volumes)
    train, val = vols[: args.volumes - 8], vols[args.volumes - 8 :]
    rows = []
    unet = {"channels": [16, 32], "res_blocks": 1} if args.tiny else {"channels": [128, 256, 256], "res_blocks": 3}
    models = {
        "ae": {"channels": [32, 64, 128, 128], "latent_dim": 128},
        "vae": {"channels": [32, 64, 128, 128], "latent_dim": 128, "beta_kl": 0.001},
        "anoddpm": dict(unet),
        "pddpm": {**unet, "patch_size": 48},
        "cddpm": {**unet, "context_dim": 128},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.models:
            hp = {"image_size": [96, 96], **models[arch]}
            s = TrainSettings(max_steps=args.steps, batch_size=32, lr=1e-4, val_every=args.steps, amp=True)
            sync(dev)
            t0 = time.perf_counter()
            fit(arch, hp, train, val, s, out_model=f"{tmp}/{arch}.pt", out_log=f"{tmp}/{arch}.tsv",
                workdir=f"{tmp}/{arch}", device=str(dev), progress=False)
            sync(dev)
            t_train = time.perf_counter() - t0
            model = load_model(f"{tmp}/{arch}.pt", str(dev))
            run_model(model, val[:1], masks[:1], batch_size=50, device=dev)  # warm-up
            sync(dev)
            t0 = time.perf_counter()
            recons = run_model(model, val, masks[: len(val)], samples=1, batch_size=50, device=dev)
            sync(dev)
            t_rec = time.perf_counter() - t0
            rows.append((arch, args.steps / t_train, len(val) / t_rec))
            print(f"{arch:>7}: train {args.steps / t_train:8.2f} steps/s (batch 32, 96x96)   "
                  f"reconstruct {len(val) / t_rec:8.2f} volumes/s (96x96x50)", flush=True)
            if arch in ("anoddpm", "pddpm", "cddpm"):  # ENS: three noise levels
                sync(dev)
                t0 = time.perf_counter()
                run_model(model, val, masks[: len(val)], noise_level=[250, 500, 750], batch_size=50, device=dev)
                sync(dev)
                print(f"{arch:>7}: ENS [250, 500, 750] {len(val) / (time.perf_counter() - t0):8.2f} volumes/s", flush=True)
        speed = {arch: rec for arch, _, rec in rows}
        if {"cddpm", "pddpm", "anoddpm"} <= set(speed):  # thesis P8.3 §5.4: -37 % vs pDDPM, +2 % vs AnoDDPM
            for other in ("pddpm", "anoddpm"):
                print(f"cDDPM inference time vs {other}: {100 * (speed[other] / speed['cddpm'] - 1):+.0f} % "
                      f"(ratio {speed[other] / speed['cddpm']:.2f})")
        if "vae" not in args.models:
            return
        model = load_model(f"{tmp}/vae.pt", str(dev))
        # multi-sample reconstructions for the scores: VAE samples
        t0 = time.perf_counter()
        multi = run_model(model, val, masks[: len(val)], samples=args.samples, batch_size=50, device=dev, seed=1)
        sync(dev)
        print(f" vae: {args.samples} samples per volume: {len(val) / (time.perf_counter() - t0):8.1f} volumes/s")
    img = torch.from_numpy(val.astype(np.float32)).to(dev)
    msk = torch.from_numpy(masks[: len(val)]).to(dev)
    rec = torch.from_numpy(multi.astype(np.float32)).to(dev)
    print("scores on (S, N, D, H, W) =", tuple(rec.shape))
    for name in available():
        try:
            score(name, img[:1, None], rec[:, :1, None], msk[:1, None])  # warm-up (+ checks the call works)
        except Exception as err:  # a score that needs other parameters
            print(f"{name:>10}: skipped ({type(err).__name__}: {err})")
            continue
        sync(dev)
        t0 = time.perf_counter()
        for i in range(len(val)):
            score(name, img[i : i + 1, None], rec[:, i : i + 1, None], msk[i : i + 1, None])
        sync(dev)
        print(f"{name:>10}: {len(val) / (time.perf_counter() - t0):8.1f} volumes/s")


if __name__ == "__main__":
    main()

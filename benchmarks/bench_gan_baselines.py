"""RA, PHANES and f-AnoGAN: training steps per second and seconds per scored volume, beside the AE.

Trains each model with the training loop (:func:`brainuad.training.fit`) for ``--steps`` steps per stage
(PHANES and f-AnoGAN: the first stage, then the second stage, timed separately), reconstructs the volumes
with :func:`brainuad.inference.run_model` and scores them with the thesis' scoring of the model (RA / PHANES:
``l1_lpips`` with a VGG16 LPIPS file of random weights written to a temporary folder -- the arithmetic of
the real score, not its calibration; f-AnoGAN: ``l1`` and its own paper score map; AE: ``l1``). Prints one
line per model and stage and the ratios to the AE, all from one run. Synthetic smooth volumes stand in for data.

    PYTHONPATH=src python benchmarks/bench_gan_baselines.py [--shape 50 96 96] [--steps 5] [--batch 32]
        [--volumes 2] [--device auto] [--threads N] [--demo]

Defaults are the thesis' sizes (96 x 96 slices, 50 per volume, batch 32, the config/thesis.yaml channels);
``--demo`` uses the demo's tiny models and 64 x 64 x 32 volumes (config/config.yaml).
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

from brainuad.evaluation.lpips import write_random_weights  # noqa: E402
from brainuad.inference import hardware_name, run_model  # noqa: E402
from brainuad.scoring import score  # noqa: E402
from brainuad.training import TrainSettings, fit, load_model, resolve_device  # noqa: E402

THESIS = {
    "ae": {"channels": [32, 64, 128, 128], "latent_dim": 128},
    "ra": {"channels": [32, 64, 128, 256], "latent_dim": 128, "beta_rec": 16.0},
    "phanes": {"channels": [32, 64, 128, 256], "latent_dim": 128, "beta_rec": 16.0, "inpaint_channels": [64, 128]},
    "fanogan": {"channels": [64, 128, 256, 512], "latent_dim": 128},
}
DEMO = {
    "ae": {"channels": [16, 32, 64, 64], "latent_dim": 128},
    "ra": {"channels": [8, 16, 32, 32], "latent_dim": 32, "beta_rec": 16.0},
    "phanes": {"channels": [8, 16, 32, 32], "latent_dim": 32, "beta_rec": 16.0, "inpaint_channels": [8, 16]},
    "fanogan": {"channels": [8, 16, 32, 32], "latent_dim": 32},
}
#: the hparam that ends the first training stage
STAGE_KEY = {"phanes": "ra_steps", "fanogan": "gan_steps"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_rates(arch: str, hparams: dict, vols, steps: int, batch: int, device, tmp: str) -> tuple[list[float], str]:
    """Training steps per second of each stage (median step time, first step of a stage excluded), and the
    checkpoint path."""
    hp = dict(hparams)
    stages = 2 if arch in STAGE_KEY else 1
    if arch in STAGE_KEY:
        hp[STAGE_KEY[arch]] = steps + 1
    total = (steps + 1) * stages
    settings = TrainSettings(max_steps=total, batch_size=batch, lr=1e-4, val_every=10 ** 9, val_max_slices=1,
                             checkpoint_every_s=1e9, seed=0, log_every=1,
                             betas=(0.0, 0.9) if arch == "fanogan" else (0.9, 0.999))
    fit(arch, hp, vols, vols[:1], settings, out_model=f"{tmp}/{arch}.pt", out_log=f"{tmp}/{arch}.tsv",
        workdir=f"{tmp}/work_{arch}", progress=False, device=str(device))
    seconds = np.loadtxt(f"{tmp}/{arch}.tsv", delimiter="\t", skiprows=1, usecols=3, ndmin=1)
    dt = np.diff(np.concatenate([[0.0], seconds]))
    rates = []
    for s in range(stages):
        part = dt[s * (steps + 1) + 1 : (s + 1) * (steps + 1)]
        rates.append(1.0 / float(np.median(part)))
    return rates, f"{tmp}/{arch}.pt"


def scored_volume_seconds(model, scorings, vols, masks, device) -> float:
    """Seconds per volume of reconstruct (or the model's map) + every scoring, after a warm-up volume."""
    def once(v, m):
        out = run_model(model, v, m, batch_size=64, device=device)
        if model.produces == "recon":
            for name, params in scorings:
                score(name, v[:, None].astype(np.float32), out[:, :, None].astype(np.float32), m[:, None], **params)

    once(vols[:1], masks[:1])
    _sync(device)
    t0 = time.perf_counter()
    for i in range(len(vols)):
        once(vols[i : i + 1], masks[i : i + 1])
    _sync(device)
    return (time.perf_counter() - t0) / len(vols)


def _bench(arch: str):
    """``bench_baselines``-style function ``(vols, masks, args, device, tmp) -> (train cell, steps/s, s/volume,
    note)`` of one GAN-type model at the thesis' sizes (its train cell gives every stage)."""
    def bench(vols, masks, args, device, tmp):
        h, w = vols.shape[-2:]
        rates, ckpt = train_rates(arch, {"image_size": [h, w], **THESIS[arch]}, vols, args.steps, args.batch, device, tmp)
        model = load_model(ckpt, str(device))
        if arch == "fanogan":
            scorings, note = [("l1", {})], "score l1"
        else:
            path = Path(tmp) / "lpips_vgg16.pth"
            if not path.exists():
                write_random_weights(path)
            scorings = [("l1_lpips", {"backbone": {"kind": "imagenet", "arch": "vgg16", "weights": str(path)}})]
            note = "score l1_lpips (VGG16, random weights)"
        cell = " / ".join(f"{r:.3f}" for r in rates)
        return cell, rates[0], scored_volume_seconds(model, scorings, vols, masks, device), note

    bench.__name__ = f"bench_{arch}"
    return bench


#: the GAN-type baselines in benchmarks/bench_baselines.py's table (train cell: stage 1 / stage 2 steps/s)
GAN_BENCHES = {arch: _bench(arch) for arch in ("ra", "phanes", "fanogan")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=None, help="D H W of the volumes (default 50 96 96)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per training stage")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--volumes", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--demo", action="store_true", help="the demo's tiny models on 32 x 64 x 64 volumes")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    shape = tuple(args.shape or ((32, 64, 64) if args.demo else (50, 96, 96)))
    sizes = DEMO if args.demo else THESIS
    vols, masks = synthetic_volumes(max(args.volumes, 2), shape)
    d, h, w = shape
    print(f"# {hardware_name(device)}; volumes {d}x{h}x{w}; {'demo' if args.demo else 'thesis'} sizes; batch "
          f"{args.batch}; {args.steps} timed steps per stage")
    with tempfile.TemporaryDirectory() as tmp:
        weights = write_random_weights(Path(tmp) / "lpips_vgg16.pth")
        lp = {"backbone": {"kind": "imagenet", "arch": "vgg16", "weights": str(weights)}}
        scorings = {"ae": [("l1", {})], "ra": [("l1_lpips", lp)], "phanes": [("l1_lpips", lp)],
                    "fanogan": [("l1", {})]}
        rows = {}
        for arch, hp in sizes.items():
            rates, ckpt = train_rates(arch, {"image_size": [h, w], **hp}, vols, args.steps, args.batch, device, tmp)
            model = load_model(ckpt, str(device))
            per_vol = scored_volume_seconds(model, scorings[arch], vols, masks, device)
            rows[arch] = (rates, per_vol)
            stage_names = {"phanes": ["RA stage", "inpainting stage"], "fanogan": ["WGAN-GP stage", "encoder stage"]}
            names = stage_names.get(arch, ["training"])
            rate_txt = ", ".join(f"{n} {r:.2f} steps/s" for n, r in zip(names, rates))
            print(f"{arch:8s} {rate_txt}; {per_vol:.3f} s per scored volume ({'+'.join(s for s, _ in scorings[arch])})")
            if arch == "fanogan":
                model.produces = "map"
                print(f"{'':8s} paper score map: {scored_volume_seconds(model, [], vols, masks, device):.3f} s per volume")
    base_rate, base_vol = rows["ae"][0][0], rows["ae"][1]
    for arch in ("ra", "phanes", "fanogan"):
        rates, per_vol = rows[arch]
        print(f"ratio {arch}/ae: training speed {' / '.join(f'{r / base_rate:.2f}' for r in rates)}; "
              f"time per scored volume {per_vol / base_vol:.2f}")


if __name__ == "__main__":
    main()

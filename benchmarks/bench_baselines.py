"""Baselines of Tables 4.2-4.4 / P8.5 (issue 14): training steps per second and seconds per scored volume.

One function per model (``bench_<name>``, registered in ``BENCHES``) trains it with the project's loop
(:func:`brainuad.training.fit`, a few steps, no validation) and maps synthetic volumes with
:func:`brainuad.inference.run_model`; ``main`` prints one line per model from one run, on one device:

    model   train steps/s   s / scored volume   backbone

The covariance model has no gradient steps: its "train" column is the seconds of the closed-form fit
(storing N training volumes), marked ``fit``. Feature backbones: ``--backbone imagenet`` builds the thesis'
ImageNet architectures (ResNet-18 / WRN-50-2 / ResNet-50) from a weights file of *random* weights written to
a temporary folder (timing does not depend on the weights; nothing is downloaded); ``--backbone ssl`` (the
demo's) uses the in-domain SSL ResNet encoder from a random checkpoint.

    PYTHONPATH=src python benchmarks/bench_baselines.py [--models cm fae rd edc] [--shape 50 96 96]
        [--steps 5] [--batch 32] [--volumes 4] [--reference 20] [--backbone imagenet|ssl] [--device auto]

Thesis sizes by default (96 x 96 slices, 50 slices per volume, batch 32); on a CPU e.g.
``--shape 16 64 64 --batch 8 --backbone ssl``.
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


def _train_and_map(arch: str, hparams: dict, vols, masks, args, device, lr: float = 1e-4) -> tuple[float, float]:
    """(training steps per second, seconds per mapped volume) of a gradient-trained 2D map model."""
    settings = TrainSettings(max_steps=args.steps + 1, batch_size=args.batch, lr=lr, val_every=10**9,
                             val_max_slices=1, checkpoint_every_s=1e9, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        fit(arch, {**hparams, "image_size": list(vols.shape[-2:])}, vols, vols[:1], settings,
            out_model=f"{tmp}/model.pt", out_log=f"{tmp}/log.tsv", workdir=f"{tmp}/work", progress=False,
            device=str(device))
        seconds = np.loadtxt(f"{tmp}/log.tsv", delimiter="\t", skiprows=1, usecols=3, ndmin=1)
        per_step = float(np.median(np.diff(seconds)))  # first step (warm-up) excluded
        model = load_model(f"{tmp}/model.pt", str(device))
    return 1.0 / per_step, _seconds_per_volume(model, vols, masks, args, device)


def _seconds_per_volume(model, vols, masks, args, device) -> float:
    run_model(model, vols[:1], masks[:1], batch_size=args.batch, device=device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    run_model(model, vols, masks, batch_size=args.batch, device=device)
    _sync(device)
    return (time.perf_counter() - t0) / len(vols)


def _backbone(arch: str, args, tmp: str) -> tuple[dict, dict]:
    """(backbone spec, extra hparams) for the benchmark: random ImageNet-architecture weights in ``tmp``, or a
    random SSL encoder checkpoint passed as ``pretrained_encoder``."""
    from brainuad.models.backbones import ResNetFeatures
    from brainuad.models.encoder import ResNetEncoder

    if args.backbone == "imagenet":
        path = Path(tmp) / f"{arch}.pth"
        if not path.exists():
            torch.save(ResNetFeatures(arch, layers=(1, 2, 3, 4)).state_dict(), path)
        return {"kind": "imagenet", "arch": arch, "weights": str(path), "layers": [1, 2, 3]}, {}
    hp = {"in_channels": 1, "channels": [32, 64, 128], "blocks": [2, 2, 2], "norm": "batch"}
    path = Path(tmp) / "ssl_encoder.pt"
    if not path.exists():
        torch.save({"encoder_hparams": hp, "encoder_state_dict": ResNetEncoder(**hp).state_dict()}, path)
    spec = {"kind": "ssl", "channels": hp["channels"], "blocks": hp["blocks"], "norm": "batch"}
    return spec, {"pretrained_encoder": str(path)}


def bench_cm(vols, masks, args, device, tmp) -> tuple[str, float, float, str]:
    """CM: seconds of the closed-form fit on ``--reference`` volumes; seconds per mapped volume."""
    ref, _ = synthetic_volumes(args.reference, tuple(vols.shape[1:]), seed=1)
    settings = TrainSettings(max_steps=1, batch_size=1, seed=0)
    t0 = time.perf_counter()
    fit("cm", {"image_size": list(vols.shape[1:]), "lam": 0.01}, ref, ref[:1], settings,
        out_model=f"{tmp}/cm.pt", out_log=f"{tmp}/cm.tsv", workdir=f"{tmp}/cm", progress=False, device=str(device))
    fit_s = time.perf_counter() - t0
    model = load_model(f"{tmp}/cm.pt", str(device))
    return f"fit {fit_s:.2f} s", fit_s, _seconds_per_volume(model, vols, masks, args, device), \
        f"N = {args.reference} reference volumes"


def bench_fae(vols, masks, args, device, tmp) -> tuple[str, float, float, str]:
    spec, extra = _backbone("resnet18", args, tmp)
    if args.backbone == "imagenet":
        spec["input_norm"] = "centered"
    sps, spv = _train_and_map("fae", {"backbone": spec, "hidden_dims": [100, 150, 200], **extra}, vols, masks, args,
                              device)
    return f"{sps:.3f}", sps, spv, spec.get("arch", "ssl")


def bench_rd(vols, masks, args, device, tmp) -> tuple[str, float, float, str]:
    spec, extra = _backbone("wide_resnet50_2", args, tmp)
    sps, spv = _train_and_map("rd", {"backbone": spec, "decoder_blocks": [3, 4, 6], **extra}, vols, masks, args, device)
    return f"{sps:.3f}", sps, spv, spec.get("arch", "ssl")


def bench_edc(vols, masks, args, device, tmp) -> tuple[str, float, float, str]:
    spec, extra = _backbone("resnet50", args, tmp)
    sps, spv = _train_and_map("edc", {"backbone": spec, "decoder_blocks": [3, 4, 6], "encoder_lr": 1e-5, **extra},
                              vols, masks, args, device, lr=5e-5)
    return f"{sps:.3f}", sps, spv, spec.get("arch", "ssl")


#: model name -> benchmark function ``(vols, masks, args, device, tmp) -> (train cell, value, s/volume, note)``
BENCHES = {"cm": bench_cm, "fae": bench_fae, "rd": bench_rd, "edc": bench_edc}

from bench_gan_baselines import GAN_BENCHES  # noqa: E402  RA, PHANES, f-AnoGAN (stage 1 / stage 2 steps/s)

BENCHES.update(GAN_BENCHES)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    ap.add_argument("--shape", nargs=3, type=int, default=[50, 96, 96], metavar=("D", "H", "W"))
    ap.add_argument("--steps", type=int, default=5, help="timed training steps (after one warm-up step)")
    ap.add_argument("--batch", type=int, default=32, help="slices per training step and per forward pass")
    ap.add_argument("--volumes", type=int, default=4, help="volumes mapped for the seconds per volume")
    ap.add_argument("--reference", type=int, default=20, help="CM: healthy reference volumes")
    ap.add_argument("--backbone", choices=["imagenet", "ssl"], default="imagenet")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    vols, masks = synthetic_volumes(args.volumes, tuple(args.shape))
    vols = vols.astype(np.float32)
    print(f"# {hardware_name(device)}; volumes {tuple(args.shape)}, batch {args.batch}, {args.steps} steps, "
          f"backbone {args.backbone}")
    print(f"{'model':8s} {'train steps/s':>16s} {'s / volume':>12s}  note")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(0)
            cell, _, spv, note = BENCHES[name](vols, masks, args, device, tmp)
            print(f"{name:8s} {cell:>16s} {spv:12.3f}  {note}", flush=True)


if __name__ == "__main__":
    main()

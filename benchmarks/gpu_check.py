"""GPU throughput check at thesis size, with each fast path against fp32 eager in the same run.

Thesis-size models: 96 x 96 slices, diffusion Unet channels [128, 256, 256] x 3 res blocks, batch 32,
volumes of 50 slices (method-spec §1.3.1). Prints, and writes as JSON (``--out``) for
``benchmarks/bench_cost.py``:

* training steps/s of ae, vae, anoddpm, pddpm, cddpm and the cDDPM encoder's SSL pre-training, for the
  variants fp32 eager / bf16 / bf16 + channels-last (/ + torch.compile for the Unet models with
  ``--compile``), each variant's ratio to fp32 eager, and one end-to-end ``brainuad.training.fit`` run
  (validation, loss log) with the config defaults;
* reconstructed volumes/s of cDDPM single step, cDDPM ENS [250, 500, 750], pDDPM (all 4 patches),
  AnoDDPM, AE, VAE and cDDPM with 10 samples + ``mhd_full``, for fp32 eager (``reconstruct.batch_size``
  50 images per call) and the fast paths (batched samples x levels x slices within a memory budget,
  bf16, channels-last), with the ratios, the max |bf16 - fp32| of the reconstructions, and the thesis'
  0.4 s and 4.9 s per volume (A6000, method-spec §7) divided by ours;
* peak GPU memory of every measurement (and the activation estimate ``images_per_call`` uses).

Synthetic smooth volumes stand in for data; weights are random (throughput does not depend on them).
``--quick`` shrinks everything (tiny Unets, few steps) so the script runs on a CPU in about a minute.

    PYTHONPATH=src python benchmarks/gpu_check.py [--quick] [--device auto] [--out FILE.json] [--compile]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from brainuad.accel import amp_enabled, autocast, compile_forward, network_of, to_channels_last
from brainuad.inference import run_model
from brainuad.models import build
from brainuad.scoring import score
from brainuad.training import resolve_device
from brainuad.training.loop import sample_batch

THESIS_SINGLE_S, THESIS_MHD_S = 0.4, 4.9  # s per volume, cDDPM single / 10 samples + full MHD (A6000, P8.5-§3)
VARIANTS = {"fp32 eager": dict(amp=False, channels_last=False, compile=False),
            "bf16": dict(amp=True, channels_last=False, compile=False),
            "bf16+channels_last": dict(amp=True, channels_last=True, compile=False),
            "bf16+channels_last+compile": dict(amp=True, channels_last=True, compile=True)}


def synthetic_volumes(n: int, shape, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random 'brains' (n, D, H, W) float16 in [0, 1] and their ellipsoid masks (uint8)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    mask = ((zz / 0.9) ** 2 + (yy / 0.8) ** 2 + (xx / 0.7) ** 2 < 1).astype(np.uint8)
    vols = np.stack([gaussian_filter(rng.random(shape), 3) for _ in range(n)])
    vols = (vols - vols.min()) / (vols.max() - vols.min()) * mask
    return vols.astype(np.float16), np.repeat(mask[None], n, 0)


def model_specs(quick: bool) -> dict[str, tuple[str, dict]]:
    """name -> (registry arch, hparams) at thesis size (``quick``: tiny)."""
    unet = {"channels": [16, 32], "res_blocks": 1} if quick else {"channels": [128, 256, 256], "res_blocks": 3}
    size = [32, 32] if quick else [96, 96]
    ae = {"channels": [8, 16], "latent_dim": 16} if quick else {"channels": [32, 64, 128, 128], "latent_dim": 128}
    enc = {"context_dim": 16, "encoder_channels": [8, 16], "encoder_blocks": [1, 1]} if quick else {"context_dim": 128}
    return {"ae": ("ae", {"image_size": size, **ae}),
            "vae": ("vae", {"image_size": size, **ae, "beta_kl": 0.001}),
            "anoddpm": ("anoddpm", {"image_size": size, **unet}),
            "pddpm": ("pddpm", {"image_size": size, **unet, "patch_size": 0.5}),
            "cddpm": ("cddpm", {"image_size": size, **unet, **enc})}


def ssl_objective(cddpm_hparams: dict):
    """The cDDPM encoder's masked-image-modelling pre-training objective (as pretrain_encoder builds it)."""
    from brainuad.models.diffusion import ConditionedDDPM
    from brainuad.models.masked_autoencoder import MaskedAutoencoder

    return MaskedAutoencoder(encoder=ConditionedDDPM.encoder_hparams(cddpm_hparams), mask_ratio=0.65, patch=8)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def peak_mb(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None


def train_rate(make_model, data: torch.Tensor, variant: dict, steps: int, warmup: int, dev: torch.device,
               batch: int = 32) -> tuple[float, float | None]:
    """Steps/s of the training step of brainuad.training.fit (batches gathered on the device, bf16 autocast,
    channels-last, compile as ``variant``; the losses read back every 50 steps), after ``warmup`` steps."""
    torch.manual_seed(0)
    model = make_model().to(dev).train()
    if getattr(model, "input_dims", 2) == 2:
        to_channels_last(model, variant["channels_last"])
    compile_forward(network_of(model), variant["compile"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    sample_gen = torch.Generator().manual_seed(1)
    model_gen = torch.Generator(device=dev if model.random_device == "model" else "cpu").manual_seed(2)
    use_amp = amp_enabled(variant["amp"], dev)
    pending = []
    reset_peak(dev)
    for i in range(warmup + steps):
        if i == warmup:
            sync(dev)
            t0 = time.perf_counter()
        x = sample_batch(data, 2, batch, sample_gen)
        if variant["channels_last"]:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev, use_amp):
            loss = model.loss(x, generator=model_gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        pending.append(loss.detach())
        if len(pending) == 50:
            torch.stack(pending).tolist()
            pending.clear()
    sync(dev)
    return steps / (time.perf_counter() - t0), peak_mb(dev)


def recon_time(model, vols, masks, dev, *, samples=1, noise_level=None, amp=False, memory_mb=0, batch_size=50,
               repeats=1) -> tuple[float, float | None, np.ndarray]:
    """Seconds per volume of brainuad.inference.run_model (after a one-volume warm-up), peak MiB, output."""
    kw = dict(samples=samples, noise_level=noise_level, amp=amp, memory_mb=memory_mb, batch_size=batch_size,
              device=dev, seed=1)
    run_model(model, vols[:1], masks[:1], **kw)  # warm-up (cuDNN autotuning, compilation)
    reset_peak(dev)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = run_model(model, vols, masks, **kw)
    sync(dev)
    return (time.perf_counter() - t0) / (repeats * len(vols)), peak_mb(dev), out


def mhd_time(vols, masks, recons, dev) -> float:
    """Seconds per volume of the mhd_full score (lam 0.01, sqrt_nan0) on (S, N, D, H, W) reconstructions."""
    img = torch.from_numpy(vols.astype(np.float32)).to(dev)
    msk = torch.from_numpy(masks > 0).to(dev)
    rec = torch.from_numpy(recons.astype(np.float32)).to(dev)
    params = dict(lam=0.01, term="sqrt_nan0")
    score("mhd_full", img[:1, None], rec[:, :1, None], msk[:1, None], **params)  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    for i in range(len(vols)):
        score("mhd_full", img[i : i + 1, None], rec[:, i : i + 1, None], msk[i : i + 1, None], **params)
    sync(dev)
    return (time.perf_counter() - t0) / len(vols)


def fmt_mb(mb):
    return "n/a" if mb is None else f"{mb:,.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny models and sizes (a CPU check that the script runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, help="JSON file for benchmarks/bench_cost.py")
    ap.add_argument("--compile", action="store_true",
                    help="also measure torch.compile of the cDDPM (training, single step, 10 samples; adds warm-ups)")
    ap.add_argument("--steps", type=int, help="timed training steps per variant")
    ap.add_argument("--volumes", type=int, help="reconstructed volumes per measurement")
    ap.add_argument("--memory-mb", type=float, help="activation budget of the batched reconstruction")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    quick = args.quick
    steps = args.steps or (4 if quick else 40)
    warmup = 2 if quick else 5
    n_vol = args.volumes or (2 if quick else 8)
    shape = (6, 32, 32) if quick else (50, 96, 96)
    budget = args.memory_mb or (64 if quick else (0.6 * torch.cuda.get_device_properties(dev).total_memory / 2**20
                                                  if dev.type == "cuda" else 4096))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    header = (f"gpu_check: {name}; torch {torch.__version__}; {'QUICK (tiny models)' if quick else 'thesis size'}; "
              f"volumes {shape[0]}x{shape[1]}x{shape[2]}, {n_vol} per measurement; {steps} timed steps; "
              f"reconstruction budget {budget:.0f} MiB")
    print(header, flush=True)
    if dev.type == "cuda":
        print(f"TF32 for convolutions: {torch.backends.cudnn.allow_tf32} (fp32 eager uses it, torch's default)")
    result = {"device": name, "quick": quick, "torch": torch.__version__, "volume_shape": list(shape),
              "train": {}, "recon": {}, "memory_mb_budget": budget}
    vols, masks = synthetic_volumes(n_vol + 4, shape)
    train_data = torch.from_numpy(vols[:4]).to(dev)
    vols, masks = vols[4:], masks[4:]
    specs = model_specs(quick)
    variants = {k: v for k, v in VARIANTS.items() if args.compile or not v["compile"]}
    if dev.type != "cuda":  # bf16 autocast is CUDA-only in the workflow; on CPU time it explicitly
        variants = {k: {**v, "amp": "always" if v["amp"] else False} for k, v in variants.items()}

    print("\n== training: steps/s (batch 32)", flush=True)
    makers = {n: (lambda a=a, h=h: build(a, **h)) for n, (a, h) in specs.items()}
    makers["ssl"] = lambda: ssl_objective(specs["cddpm"][1])
    for mname, make in makers.items():
        rates = {}
        for vname, variant in variants.items():
            if variant["compile"] and mname != "cddpm":  # compile warm-ups are minutes: the cDDPM only
                continue
            rate, peak = train_rate(make, train_data, variant, steps, warmup + (3 if variant["compile"] else 0), dev)
            rates[vname] = {"steps_per_s": rate, "peak_mb": peak}
            base = rates["fp32 eager"]["steps_per_s"]
            print(f"{mname:>8} {vname:<28} {rate:9.2f} steps/s  x{rate / base:5.2f} vs fp32 eager  peak {fmt_mb(peak)}",
                  flush=True)
        result["train"][mname] = rates

    print(f"\n== reconstruction: volumes/s ({shape[0]}-slice volumes; thesis: 0.4 s single, 4.9 s 10 samples + MHD)",
          flush=True)
    cases = [("cddpm single step", "cddpm", 1, None), ("cddpm ENS [250,500,750]", "cddpm", 1, [250, 500, 750]),
             ("pddpm (4 patches)", "pddpm", 1, None), ("anoddpm single step", "anoddpm", 1, None),
             ("ae", "ae", 1, None), ("vae", "vae", 1, None), ("cddpm 10 samples", "cddpm", 10, None)]
    amp_on = True if dev.type == "cuda" else "always"
    paths = {"fp32 eager": dict(amp=False, memory_mb=0, channels_last=False),
             "batched": dict(amp=False, memory_mb=budget, channels_last=False),
             "batched+bf16": dict(amp=amp_on, memory_mb=budget, channels_last=False),
             "batched+bf16+channels_last": dict(amp=amp_on, memory_mb=budget, channels_last=True)}
    if args.compile:
        paths["batched+bf16+channels_last+compile"] = dict(amp=amp_on, memory_mb=budget, channels_last=True,
                                                           compile=True)
    for label, mname, samples, levels in cases:
        arch, hp = specs[mname]
        row, ref = {}, None
        for pname, p in paths.items():
            if p.get("compile") and label not in ("cddpm single step", "cddpm 10 samples"):
                continue
            torch.manual_seed(0)
            model = build(arch, **hp).to(dev).eval()
            to_channels_last(model, p["channels_last"])
            compile_forward(network_of(model), p.get("compile", False))
            sec, peak, out = recon_time(model, vols, masks, dev, samples=samples, noise_level=levels, amp=p["amp"],
                                        memory_mb=p["memory_mb"])
            diff = None if ref is None else float(np.abs(out.astype(np.float32) - ref).max())
            ref = out.astype(np.float32) if ref is None else ref
            row[pname] = {"seconds_per_volume": sec, "peak_mb": peak, "max_abs_diff_vs_fp32": diff}
            base = row["fp32 eager"]["seconds_per_volume"]
            extra = "" if diff is None else f"  max|diff| {diff:.4f}"
            print(f"{label:<24} {pname:<27} {1 / sec:9.2f} vol/s ({sec:7.3f} s)  x{base / sec:5.2f} vs fp32 eager  "
                  f"peak {fmt_mb(peak)}{extra}", flush=True)
        if mname in ("anoddpm", "pddpm", "cddpm") and samples == 1 and levels is None:
            est = build(arch, **hp).activation_bytes(4) / 2**20
            row["activation_estimate_mb_per_image"] = est
        result["recon"][label] = row
        if label == "cddpm 10 samples":
            best = min(row, key=lambda k: row[k]["seconds_per_volume"] if isinstance(row[k], dict) else 1e9)
            model = build(arch, **hp).to(dev).eval()
            _, _, out = recon_time(model, vols, masks, dev, samples=10, amp=paths[best]["amp"],
                                   memory_mb=paths[best]["memory_mb"])
            mhd = mhd_time(vols, masks, out, dev)
            total = row[best]["seconds_per_volume"] + mhd
            result["recon"]["cddpm 10 samples + mhd_full"] = {"path": best, "mhd_seconds_per_volume": mhd,
                                                               "seconds_per_volume": total}
            print(f"{'cddpm 10 samples + mhd_full':<24} {best:<27} {1 / total:9.2f} vol/s ({total:7.3f} s; "
                  f"mhd_full {mhd:.3f} s)", flush=True)

    single = min(v["seconds_per_volume"] for k, v in result["recon"]["cddpm single step"].items() if isinstance(v, dict))
    mhd_total = result["recon"]["cddpm 10 samples + mhd_full"]["seconds_per_volume"]
    print(f"\nthesis / ours: cDDPM single step {THESIS_SINGLE_S} s / {single:.4f} s = {THESIS_SINGLE_S / single:.1f}x; "
          f"10 samples + mhd_full {THESIS_MHD_S} s / {mhd_total:.4f} s = {THESIS_MHD_S / mhd_total:.1f}x "
          f"(goal <= 0.5 s: {'met' if mhd_total <= 0.5 else 'NOT met'})"
          + (" -- QUICK mode: tiny models, not comparable with the thesis" if quick else ""))
    result["thesis_ratio"] = {"single": THESIS_SINGLE_S / single, "mhd10": THESIS_MHD_S / mhd_total}

    print("\n== end-to-end brainuad.training.fit (cddpm, config defaults: amp on CUDA, data on device, "
          "loss read-back every 50 steps)", flush=True)
    import tempfile

    from brainuad.training import TrainSettings, fit

    arch, hp = specs["cddpm"]
    fit_steps = max(steps, 10)
    with tempfile.TemporaryDirectory() as tmp:
        s = TrainSettings(max_steps=fit_steps, batch_size=32, val_every=fit_steps, val_max_slices=64)
        t0 = time.perf_counter()
        fit(arch, hp, train_data.cpu().numpy(), vols[:1], s, out_model=f"{tmp}/m.pt", out_log=f"{tmp}/l.tsv",
            workdir=f"{tmp}/w", device=str(dev), progress=False)
        sync(dev)
        sec = time.perf_counter() - t0
    print(f"fit: {fit_steps} steps + 1 validation in {sec:.1f} s = {fit_steps / sec:.2f} steps/s (includes model "
          f"build, warm-up and validation)")
    result["fit_cddpm_steps_per_s"] = fit_steps / sec
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

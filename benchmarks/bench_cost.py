"""GPU cost of the whole thesis matrix: planned jobs x per-model rates -> GPU-hours per stage and wall time.

1. **Job list.** A dry-run of ``all_tables all_sweeps`` with ``config/thesis.yaml`` after fake manifests
   with the thesis' subject counts (:mod:`bench_planning`), parsed into one row per GPU job
   (``pretrain_encoder``, ``train``, ``reconstruct``) with its wildcards; the CPU jobs are only counted.
   ``--plan FILE`` reuses a saved job list (``--save-plan FILE`` writes one).
2. **Work per job** from the study's own settings (:class:`brainuad.study.Study`): training =
   ``max_steps`` steps of ``batch_size`` slices (+ the validations), pre-training likewise, reconstruction
   = evaluation volumes x 50 slices x samples x noise levels x patch positions network passes. Volumes per
   job: a pathology dataset's subjects (all are validation or test), the healthy set's fold validation
   + test subjects (thesis counts: IXI 562, BraTS21 1251, MSLUB 30, ATLAS v2 655, WMH 60).
3. **Rates.** ``--rates gpu_check.json`` (a ``benchmarks/gpu_check.sh`` run): measured training steps/s per
   model and measured seconds per network pass in reconstruction, scaled by the FLOP ratio where a sweep
   changes a model's size. Without it, a FLOP model: forward FLOPs per image counted with
   ``torch.utils.flop_counter`` (meta tensors), training = 3 x forward, on ``--peak-tflops`` (H200 bf16
   dense: 989) x ``--mfu`` (0.35) with a floor of ``--floor-ms`` per optimiser step (small models are
   launch-bound); reconstruction in fp32 (``reconstruct_amp`` off, TF32 convolutions: half the bf16
   peak) unless ``--recon-bf16``. The CPU's measured rate on this machine is printed with the implied
   scale factor CPU -> GPU.

Prints GPU-hours per stage and in total, the wall time on G in {1, 4, 16} GPUs (list scheduling,
longest job first, pre-train -> train -> reconstruct dependencies), the goals (<= 24 H200-hours for
the matrix, cDDPM + 10 samples + MHD <= 0.5 s per volume) and what dominates.

    PYTHONPATH=src python benchmarks/bench_cost.py [--rates benchmarks/results/gpu_check-gpu-*.json]
        [--plan benchmarks/results/thesis_gpu_jobs.tsv] [--mfu 0.35] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import csv
import heapq
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_planning import SNAKEMAKE, THESIS_COUNTS, fake_manifests  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GPU_RULES = ("pretrain_encoder", "train", "train_stage2", "reconstruct")
SLICES = 50  # per volume (method-spec §1.3.1)
JOB = re.compile(r"^(?:local)?rule (\w+):$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


# ------------------------------------------------------------------------------------------------ the plan


def plan_jobs(configfile: Path) -> tuple[list[dict], dict[str, int]]:
    """GPU jobs (rule + wildcards) and the count of every rule, from one dry-run with thesis-size manifests."""
    config = yaml.safe_load(configfile.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        fake_manifests(Path(tmp), config)
        cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", tmp, "--configfile", str(configfile),
               "--replace-workflow-config", "-n", "all_tables", "all_sweeps", "--rerun-triggers", "mtime"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dry-run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return parse_dry_run(proc.stdout)


def parse_dry_run(text: str) -> tuple[list[dict], dict[str, int]]:
    """Rows ``{"rule", wildcard: value ...}`` of the GPU rules and ``{rule: count}`` of a dry-run's output."""
    jobs, counts, rule = [], defaultdict(int), None
    for line in text.splitlines():
        m = JOB.match(line)
        if m:
            rule = m.group(1)
            counts[rule] += 1
            continue
        m = WILDCARDS.match(line)
        if m and rule in GPU_RULES:
            jobs.append({"rule": rule, **dict(kv.split("=", 1) for kv in m.group(1).split(", "))})
            rule = None
    return jobs, dict(counts)


def save_plan(path: Path, jobs: list[dict], counts: dict) -> None:
    keys = ["rule", "trainset", "model", "run", "fold", "dataset"]
    with open(path, "w", newline="") as fh:
        fh.write("# rule counts: " + json.dumps(counts) + "\n")
        writer = csv.DictWriter(fh, fieldnames=keys, delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(jobs)


def load_plan(path: Path) -> tuple[list[dict], dict]:
    lines = path.read_text().splitlines()
    counts = json.loads(lines[0].split(":", 1)[1])
    rows = list(csv.DictReader(lines[1:], delimiter="\t"))
    return [{k: v for k, v in r.items() if v} for r in rows], counts


# ------------------------------------------------------------------------------------------------ the work


def thesis_volumes(config: dict, dataset: str) -> int:
    """Volumes a reconstruct job of ``dataset`` covers, at the thesis' subject counts."""
    n = THESIS_COUNTS.get(dataset.split("_")[0], 100)
    if config["datasets"][dataset]["role"] != "healthy":
        return n
    test = round(config["splits"]["healthy_test"] * n)
    return round(config["splits"]["val_fraction"] * (n - test)) + test


def forward_gflops(arch: str, hparams: dict, cache: dict) -> float:
    """Forward GFLOPs of one 96 x 96 image (a volume model: one SLICES x 96 x 96 volume) through the model.

    Counted with ``torch.utils.flop_counter`` on two images (batch norm in training mode needs more than
    one; the count is halved): a diffusion model's Unet call, else the training loss (the networks the
    loss runs: a GAN's generator and critic, DRAEM's two networks), on meta tensors and, where the loss
    reads a value back (``.item()``), on random CPU images; where the loss cannot be counted (autograd
    inside the loss: f-AnoGAN's gradient penalty) the model's forward pass. Learning-free models and
    fitted statistics (``thresh``, the covariance model: no ``loss``) count 0. The way used per arch
    is in ``COUNTED_BY``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from brainuad.models import INIT_ONLY, build, model_class

    hp = {k: v for k, v in hparams.items() if k not in INIT_ONLY and k != "pretrained_encoder"}
    hp.setdefault("image_size", [SLICES, 96, 96] if volume_model(arch) else [96, 96])
    if "stage1_hparams" in hp:  # SADM Stage II: its Stage I model sees the same slices
        hp["stage1_hparams"] = {"image_size": hp["image_size"], **hp["stage1_hparams"]}
    key = (arch, json.dumps(hp, sort_keys=True))
    if key in cache:
        return cache[key]
    if arch == "thresh" or not hasattr(model_class(arch), "loss"):
        COUNTED_BY[arch] = "no network (0)"
        cache[key] = 0.0
        return 0.0

    def count(device: str, way: str) -> float:
        torch.manual_seed(0)
        with torch.device(device):
            model = build(arch, **hp)
            shape = (2, channels, *hp["image_size"])
            x = torch.rand(shape) if device == "cpu" else torch.zeros(shape)
            if way == "loss" and channels == len(sadm.CHANNELS):  # Stage II: image, brain mask (all 1), label
                x[:, 1] = 1.0
            with FlopCounterMode(display=False) as fc:
                if way == "denoise":
                    model.denoise(x, torch.zeros(2, dtype=torch.long), model.context(x))
                elif way == "loss":
                    model.loss(x)
                else:
                    model(x)
        return fc.get_total_flops() / 2

    from brainuad.models import sadm

    # SADM Stage II trains on (image, brain mask, label) stacks; its loss runs the frozen Stage I too
    channels = len(sadm.CHANNELS) if issubclass(model_class(arch), sadm.StageTwo) else 1
    ways = ["denoise"] if hasattr(model_class(arch), "denoise") else ["forward"] if arch == "dae" else ["loss", "forward"]
    errors = []
    for way in ways:  # dae: its loss draws a random roll; the network pass is its work
        for device in ("meta", "cpu"):
            try:
                flops = count(device, way)
            except Exception as err:  # noqa: BLE001 - the next way; all failing raises below
                errors.append(f"{way} on {device}: {type(err).__name__}: {str(err)[:120]}")
                continue
            COUNTED_BY[arch] = f"{way} ({device})"
            cache[key] = flops / 1e9
            return cache[key]
    raise RuntimeError(f"cannot count the FLOPs of {arch!r}: " + "; ".join(errors))


COUNTED_BY: dict[str, str] = {}


def volume_model(arch: str) -> bool:
    """True for models that take whole volumes (``input_dims`` 3: one network pass per volume)."""
    from brainuad.models import model_class

    return arch != "thresh" and model_class(arch).input_dims == 3


def ssl_gflops(encoder_hparams: dict) -> float:
    """Forward GFLOPs per image of the SSL objective (the masked autoencoder), counted on one CPU image."""
    from torch.utils.flop_counter import FlopCounterMode

    from brainuad.models.masked_autoencoder import MaskedAutoencoder

    model = MaskedAutoencoder(encoder=encoder_hparams)
    with FlopCounterMode(display=False) as fc:
        model.loss(torch.rand(2, 1, 96, 96), generator=torch.Generator().manual_seed(0))
    return fc.get_total_flops() / 2 / 1e9


class Rates:
    """Seconds of GPU work: per training step and per reconstruction network pass (one image)."""

    def __init__(self, args):
        self.args = args
        self.measured = json.loads(Path(args.rates).read_text()) if args.rates else None
        if self.measured and self.measured.get("quick"):
            print("note: the rates file is a --quick run (tiny models): the estimate is not thesis-size")
        self.cache: dict = {}
        self.ref = {}  # arch -> forward GFLOPs at the measured (thesis) size

    def eff_flops(self, bf16: bool) -> float:
        peak = self.args.peak_tflops * (1.0 if bf16 else 0.5)
        return peak * 1e12 * self.args.mfu

    def train_step(self, arch: str, gflops: float, batch: int, ref_gflops: float | None = None) -> float:
        """Seconds per optimiser step (bf16 training, the CUDA default)."""
        if self.measured and arch in self.measured["train"]:
            rates = self.measured["train"][arch]
            rate = rates.get(self.args.train_variant, rates["fp32 eager"])["steps_per_s"]
            scale = (gflops / ref_gflops if ref_gflops else 1.0) * batch / 32
            return scale / rate
        return max(3 * gflops * 1e9 * batch / self.eff_flops(True), self.args.floor_ms / 1000)

    def recon_pass(self, arch: str, gflops: float, ref_gflops: float | None = None) -> float:
        """Seconds per image through the network at test time (batched)."""
        if self.measured:
            key = {"cddpm": "cddpm 10 samples", "anoddpm": "anoddpm single step", "pddpm": "pddpm (4 patches)",
                   "ae": "ae", "vae": "vae"}.get(arch)
            if key in self.measured["recon"]:
                row = self.measured["recon"][key]
                path = self.args.recon_path if self.args.recon_path in row else "fp32 eager"
                per_volume = row[path]["seconds_per_volume"]
                passes = SLICES * (10 if key == "cddpm 10 samples" else 4 if arch == "pddpm" else 1)
                return per_volume / passes * (gflops / ref_gflops if ref_gflops else 1.0)
        return max(gflops * 1e9 / self.eff_flops(self.args.recon_bf16), 1e-5)


def job_seconds(job: dict, study, config: dict, rates: Rates) -> tuple[float, str]:
    """GPU seconds of one job and the model family it belongs to."""
    model, run, fold = job["model"], job["run"], job["fold"]
    entry = study.model_entry(model, run)
    arch = entry["arch"]
    hparams = study.model_hparams(model, run)
    if entry.get("stage2"):  # SADM Stage II: the frozen Stage I model runs inside its loss and reconstruction
        from brainuad.training.stage2 import stage2_hparams

        hparams = stage2_hparams(hparams, study.stage1_params(model), study.stage2_data(model)["kind"], None)
    ref = None
    if rates.measured:  # FLOPs of the thesis-size model the rates were measured with
        ref = forward_gflops(arch, THESIS_SIZE.get(arch, hparams), rates.cache)
    gf = forward_gflops(arch, hparams, rates.cache)
    if job["rule"] in ("train", "train_stage2"):
        s = study.train_settings(model, run, fold)
        if "max_steps" not in s:  # a fitted statistic (CM: one pass over the training set, no optimiser steps)
            return 0.0, arch
        steps, batch = s["max_steps"], s.get("batch_size", 32)
        vals = steps // s.get("val_every", 100) + 1
        val_images = vals * s.get("val_max_slices", 512)
        frozen = frozen_stage1_gflops(study, model, rates) if job["rule"] == "train_stage2" else 0.0
        step = rates.train_step(arch, max(gf - frozen, 0.0), batch, ref)
        step += frozen * 1e9 * batch / rates.eff_flops(True)  # the frozen Stage I: forward only, no backward
        return steps * step + val_images * step / (3 * batch), arch
    if job["rule"] == "pretrain_encoder":
        s = study.pretrain_settings(model, run, fold)
        from brainuad.models.diffusion import ConditionedDDPM

        key = ("ssl", json.dumps(hparams, sort_keys=True))
        if key not in rates.cache:
            rates.cache[key] = ssl_gflops(ConditionedDDPM.encoder_hparams(hparams))
        g = rates.cache[key]
        if rates.measured and "ssl" in rates.measured["train"]:
            r = rates.measured["train"]["ssl"]
            step = 1 / r.get(rates.args.train_variant, r["fp32 eager"])["steps_per_s"]
        else:
            step = max(3 * g * 1e9 * s["batch_size"] / rates.eff_flops(True), rates.args.floor_ms / 1000)
        return s["max_steps"] * step, "ssl pretrain"
    # reconstruct
    s = study.reconstruct_settings(model, run)
    if arch == "thresh":
        return 0.0, arch
    levels = s.get("noise_level", hparams.get("t_test", 500))
    n_levels = len(levels) if isinstance(levels, list) else 1
    samples = s["samples"] if arch in ("vae", "anoddpm", "pddpm", "cddpm") else 1
    positions = 4 if arch == "pddpm" else 1  # 48 px patches on 96 x 96 (a sweep's other sizes: see the note)
    per_volume = 1 if volume_model(arch) else SLICES  # volume models: one pass per volume
    passes = thesis_volumes(config, job["dataset"]) * per_volume * samples * n_levels * positions
    return passes * rates.recon_pass(arch, gf, ref), arch


def frozen_stage1_gflops(study, model: str, rates: Rates) -> float:
    """Forward GFLOPs per image of the frozen Stage I model inside a SADM Stage II training step: one Unet
    call per noise level (ENS: each level), run without gradients (counted once, not as 3 x forward)."""
    stage1 = study.stage1_params(model)
    levels = stage1.get("noise_level")
    n_levels = len(levels) if isinstance(levels, list) else 1
    hp = {"image_size": [96, 96], **stage1["hparams"]}
    return forward_gflops(stage1["arch"], hp, rates.cache) * n_levels


THESIS_SIZE = {"ae": {"channels": [32, 64, 128, 128], "latent_dim": 128},
               "vae": {"channels": [32, 64, 128, 128], "latent_dim": 128, "beta_kl": 0.001},
               "anoddpm": {"channels": [128, 256, 256], "res_blocks": 3},
               "pddpm": {"channels": [128, 256, 256], "res_blocks": 3, "patch_size": 48},
               "cddpm": {"channels": [128, 256, 256], "res_blocks": 3, "context_dim": 128}}


def wall_time(jobs: list[tuple[str, float, str]], deps: dict[str, list[str]], gpus: int) -> float:
    """Makespan of list scheduling on ``gpus`` workers: ready jobs longest first; ``deps[id]`` must finish first."""
    remaining = {jid: len(deps.get(jid, [])) for jid, _, _ in jobs}
    children = defaultdict(list)
    for jid, parents in deps.items():
        for p in parents:
            children[p].append(jid)
    length = {jid: sec for jid, sec, _ in jobs}
    ready = [(-length[j], j) for j, n in remaining.items() if n == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < gpus:
            _, j = heapq.heappop(ready)
            heapq.heappush(running, (now + length[j], j))
        now, done = heapq.heappop(running)
        for c in children[done]:
            remaining[c] -= 1
            if remaining[c] == 0:
                heapq.heappush(ready, (-length[c], c))
    return now


def cpu_reference() -> tuple[float, float]:
    """Achieved CPU TFLOP/s of a thesis-size cDDPM forward (batch 2) on this machine, and the seconds it took."""
    from torch.utils.flop_counter import FlopCounterMode

    from brainuad.models import build

    torch.manual_seed(0)
    m = build("cddpm", image_size=[96, 96], channels=[128, 256, 256], res_blocks=3, context_dim=128).eval()
    x, t = torch.rand(2, 1, 96, 96), torch.tensor([499, 499])
    with torch.no_grad():
        m.denoise(x, t, m.context(x))  # warm-up
        with FlopCounterMode(display=False) as fc:
            t0 = time.perf_counter()
            m.denoise(x, t, m.context(x))
            sec = time.perf_counter() - t0
    return fc.get_total_flops() / sec / 1e12, sec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", type=Path, default=ROOT / "config" / "thesis.yaml")
    ap.add_argument("--plan", type=Path, help="a saved job list (--save-plan) instead of a dry-run")
    ap.add_argument("--save-plan", type=Path, help="write the dry-run's GPU job list here")
    ap.add_argument("--rates", help="JSON of a benchmarks/gpu_check.sh run (GPU); default: the FLOP model")
    ap.add_argument("--train-variant", default="bf16", help="gpu_check training variant the cost uses")
    ap.add_argument("--recon-path", default="batched", help="gpu_check reconstruction path the cost uses")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="GPU dense bf16 peak (H200 SXM: 989)")
    ap.add_argument("--mfu", type=float, default=0.35, help="achieved fraction of the peak (FLOP model)")
    ap.add_argument("--floor-ms", type=float, default=4.0, help="minimum ms per training step (FLOP model)")
    ap.add_argument("--recon-bf16", action="store_true", help="FLOP model: reconstruct in bf16 (reconstruct_amp)")
    ap.add_argument("--no-cpu", action="store_true", help="skip the CPU reference measurement")
    args = ap.parse_args()

    from brainuad.study import Study

    config = yaml.safe_load(args.configfile.read_text())
    if args.plan:
        jobs, counts = load_plan(args.plan)
    else:
        t0 = time.perf_counter()
        jobs, counts = plan_jobs(args.configfile)
        print(f"planned {sum(counts.values())} jobs in {time.perf_counter() - t0:.0f} s (dry-run)")
    if args.save_plan:
        save_plan(args.save_plan, jobs, counts)
    from snakemake.utils import validate

    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    study = Study(config, ROOT)
    rates = Rates(args)
    source = (f"measured: {args.rates} ({rates.measured['device']}; train {args.train_variant}, "
              f"reconstruct {args.recon_path})" if rates.measured else
              f"FLOP model: {args.peak_tflops:.0f} TFLOP/s bf16 peak x MFU {args.mfu} (fp32/TF32 reconstruction "
              f"at half that{'; bf16 reconstruction' if args.recon_bf16 else ''}), >= {args.floor_ms} ms per step")
    print(f"config: {args.configfile}\nrates: {source}")

    rows, deps = [], defaultdict(list)
    by_stage, by_family, by_model = defaultdict(float), defaultdict(float), defaultdict(float)
    n_stage = defaultdict(int)
    for job in jobs:
        sec, family = job_seconds(job, study, config, rates)
        jid = "/".join(job.get(k, "") for k in ("rule", "trainset", "model", "run", "fold", "dataset"))
        rows.append((jid, sec, job["rule"]))
        by_stage[job["rule"]] += sec
        n_stage[job["rule"]] += 1
        by_family[(job["rule"], family)] += sec
        by_model[(job["rule"], job["model"] + (" (sweep rows)" if job["run"] != "default" else ""))] += sec
    ids = {r[0] for r in rows}
    for job in jobs:  # dependencies: pretrain -> train -> reconstruct of the same weights
        jid = "/".join(job.get(k, "") for k in ("rule", "trainset", "model", "run", "fold", "dataset"))
        key = "/".join(job.get(k, "") for k in ("trainset", "model", "run", "fold"))
        if job["rule"] in ("train", "train_stage2"):
            deps[jid] += [p for p in (f"pretrain_encoder/{key}/",) if p in ids]
        elif job["rule"] == "reconstruct":
            s = study
            weights = "/".join([job["trainset"], s.weights_model(job["model"]),
                                s.train_run(job["model"], job["run"]), job["fold"]])
            deps[jid] += [p for p in (f"train/{weights}/",) if p in ids]

    total = sum(by_stage.values())
    print(f"\n{'stage':<18}{'jobs':>6}{'GPU-hours':>11}")
    for stage in GPU_RULES:
        print(f"{stage:<18}{n_stage[stage]:>6}{by_stage[stage] / 3600:>11.2f}")
    print(f"{'total':<18}{len(rows):>6}{total / 3600:>11.2f}")
    cpu_jobs = {k: v for k, v in counts.items() if k not in GPU_RULES}
    print(f"CPU jobs (not in the GPU-hours): {sum(cpu_jobs.values())} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(cpu_jobs.items(), key=lambda kv: -kv[1])[:6])}, ...)")
    print("\nlargest shares by model family:")
    for (stage, family), sec in sorted(by_family.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {stage:<17} {family:<28} {sec / 3600:8.2f} GPU-h ({100 * sec / max(total, 1e-9):4.1f} %)")
    print("largest shares by config model:")
    for (stage, name), sec in sorted(by_model.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {stage:<17} {name:<28} {sec / 3600:8.2f} GPU-h ({100 * sec / max(total, 1e-9):4.1f} %)")
    print("\nwall time (list scheduling, dependencies kept):")
    for g in (1, 4, 16):
        print(f"  {g:>2} GPU(s): {wall_time(rows, deps, g) / 3600:7.2f} h")
    goal = 24.0
    print(f"\ngoal: whole thesis matrix <= {goal:.0f} H200-hours: {'met' if total / 3600 <= goal else 'NOT met'} "
          f"({total / 3600:.1f} h; {'this is an H200 figure' if not rates.measured else rates.measured['device']})")
    gf = forward_gflops("cddpm", THESIS_SIZE["cddpm"], rates.cache)
    per_vol = SLICES * 10 * rates.recon_pass("cddpm", gf, gf)
    mhd = rates.measured["recon"].get("cddpm 10 samples + mhd_full", {}).get("mhd_seconds_per_volume") \
        if rates.measured else None
    print(f"cDDPM + 10 samples: {per_vol:.3f} s per volume of network work"
          + (f" + mhd_full {mhd:.3f} s" if mhd is not None else " (+ mhd_full: measured only by gpu_check)")
          + f"; goal <= 0.5 s: {'met' if per_vol + (mhd or 0) <= 0.5 else 'NOT met'}")
    if not args.no_cpu:
        tflops, sec = cpu_reference()
        eff = rates.eff_flops(args.recon_bf16) / 1e12
        print(f"\nCPU reference (this machine): thesis-size cDDPM forward, 2 slices: {sec:.2f} s = {tflops:.3f} "
              f"TFLOP/s; the FLOP model's GPU ({eff:.0f} TFLOP/s in reconstruction) = {eff / tflops:,.0f} x this CPU")


if __name__ == "__main__":
    main()

"""benchmarks/bench_cost.py: the dry-run parser, the list scheduler and the per-job work."""

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("bench_cost", ROOT / "benchmarks" / "bench_cost.py")
bench_cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_cost)

DRY_RUN = """
rule train:
    input: results/data/ixi_t2/volumes.npz
    wildcards: trainset=ixi_t2, model=cddpm, run=default, fold=0
    resources: tmpdir=/tmp, gpu=1
[Sun Dec  6 12:42:10 2026]
rule score:
    wildcards: trainset=ixi_t2, model=cddpm, run=default, fold=0, dataset=brats_t2, scoring=l1
[Sun Dec  6 12:42:10 2026]
localrule all_tables:
    input: a
rule reconstruct:
    wildcards: trainset=ixi_t2, model=cddpm, run=default, fold=0, dataset=brats_t2
"""


def test_parse_dry_run_keeps_gpu_jobs_and_counts_every_rule(tmp_path):
    jobs, counts = bench_cost.parse_dry_run(DRY_RUN)
    assert counts == {"train": 1, "score": 1, "all_tables": 1, "reconstruct": 1}
    assert jobs == [{"rule": "train", "trainset": "ixi_t2", "model": "cddpm", "run": "default", "fold": "0"},
                    {"rule": "reconstruct", "trainset": "ixi_t2", "model": "cddpm", "run": "default", "fold": "0",
                     "dataset": "brats_t2"}]
    bench_cost.save_plan(tmp_path / "p.tsv", jobs, counts)
    assert bench_cost.load_plan(tmp_path / "p.tsv") == (jobs, counts)


def test_wall_time_list_scheduling_with_dependencies():
    jobs = [("a", 4.0, "train"), ("b", 3.0, "train"), ("c", 2.0, "train"), ("d", 1.0, "reconstruct")]
    deps = {"d": ["a"]}
    assert bench_cost.wall_time(jobs, deps, 1) == 10.0
    # 2 GPUs: a | b, then c on the GPU b freed (3 -> 5), d after a (4 -> 5)
    assert bench_cost.wall_time(jobs, deps, 2) == 5.0
    assert bench_cost.wall_time(jobs, deps, 16) == 5.0  # the chain a -> d


def test_thesis_volumes_per_reconstruct_job():
    config = yaml.safe_load((ROOT / "config" / "thesis.yaml").read_text())
    assert bench_cost.thesis_volumes(config, "ixi_t2") == 44 + 160  # fold validation + test (config comments)
    assert bench_cost.thesis_volumes(config, "mslub_t2") == 30  # a pathology set: every subject


def test_forward_flops_of_the_thesis_unet_by_hand():
    """The FLOP model's count of the input convolution alone, checked against 2 * MACs by hand."""
    from torch.utils.flop_counter import FlopCounterMode
    import torch

    conv = torch.nn.Conv2d(1, 128, 3, padding=1)
    with FlopCounterMode(display=False) as fc:
        conv(torch.zeros(1, 1, 96, 96))
    assert fc.get_total_flops() == 2 * 128 * 9 * 96 * 96
    g = bench_cost.forward_gflops("anoddpm", {"channels": [128, 256, 256], "res_blocks": 3}, {})
    assert 100 < g < 150  # thesis-size Unet: ~126 GFLOP per 96 x 96 image
    assert bench_cost.forward_gflops("thresh", {}, {}) == 0.0


@pytest.mark.parametrize("bf16", [False, True])
def test_flop_model_rates(bf16):
    class Args:
        rates, peak_tflops, mfu, floor_ms, recon_bf16, train_variant, recon_path = None, 1000.0, 0.5, 4.0, bf16, "bf16", "batched"

    r = bench_cost.Rates(Args)
    assert r.recon_pass("cddpm", 100.0) == pytest.approx(100e9 / (1000e12 * 0.5 * (1 if bf16 else 0.5)))
    assert r.train_step("cddpm", 100.0, 32) == pytest.approx(3 * 100e9 * 32 / 500e12)
    assert r.train_step("ae", 0.001, 32) == pytest.approx(0.004)  # the launch-bound floor


def test_volume_models_are_counted_per_volume():
    """svae takes whole volumes: its FLOPs are per SLICES x 96 x 96 volume (about SLICES times a slice model of
    the same per-slice layout); the DAE is counted by its network pass (its loss draws on the host)."""
    assert bench_cost.volume_model("svae") and bench_cost.volume_model("vae3d") and not bench_cost.volume_model("vae")
    hp = {"channels": [4, 8], "latent_dim": 8}
    per_volume = bench_cost.forward_gflops("svae", {**hp, "d_model": 8, "layers": 1, "heads": 2}, {})
    per_slice = bench_cost.forward_gflops("vae2d_p81", hp, {})
    assert 0.5 * bench_cost.SLICES < per_volume / per_slice < 2 * bench_cost.SLICES
    assert bench_cost.forward_gflops("dae", {"channels": [4, 8]}, {}) > 0


def test_every_thesis_model_gets_a_cost():
    """Each model family of config/thesis.yaml (GANs, DRAEM, SADM Stage II, the covariance model...) is counted:
    a training job costs > 0 GPU seconds unless the model has no network to train (thresh, the covariance
    model's fitted statistic), and Stage II costs more than its segmentation Unet alone (its loss runs the
    frozen Stage I diffusion model)."""
    from brainuad.study import Study

    config = yaml.safe_load((ROOT / "config" / "thesis.yaml").read_text())
    study = Study(config, ROOT)

    class Args:
        rates, peak_tflops, mfu, floor_ms, recon_bf16, train_variant, recon_path = None, 989.0, 0.35, 0.0, False, "bf16", "batched"

    rates = bench_cost.Rates(Args)
    costs = {}
    for name, entry in config["models"].items():
        if entry.get("weights_from"):
            continue
        rule = "train_stage2" if entry.get("stage2") else "train"
        job = {"rule": rule, "trainset": "ixi_t2", "model": name, "run": "default", "fold": "0"}
        try:
            costs[name] = bench_cost.job_seconds(job, study, config, rates)
        except RuntimeError as err:  # a feature backbone without its local weights file is not planned either
            assert "not configured" in str(err), err
    assert {"cddpm", "pddpm", "anoddpm", "ra", "fanogan", "draem_net"} <= {arch for _, arch in costs.values()}, costs
    no_network = {n for n, (_, arch) in costs.items() if arch in ("thresh", "cm")}
    assert all(sec > 0 for n, (sec, _) in costs.items() if n not in no_network), costs
    assert all(costs[n][0] == 0 for n in no_network)
    stage2 = [n for n, e in config["models"].items() if e.get("stage2")]
    assert stage2 and bench_cost.COUNTED_BY["sadm"].startswith("loss")

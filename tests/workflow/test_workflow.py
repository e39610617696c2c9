"""The whole DAG on the tiny smoke configuration, plus lint and rerun behaviour (dry-runs)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from brainuad.utils import dry_run_job_counts

ROOT = Path(__file__).resolve().parents[2]
SMOKE_FILE = ROOT / "tests" / "smoke" / "config.yaml"
# The smoke config with the demo's job granularity (config/config.yaml: jobs.reconstruct and jobs.train per_model,
# jobs.preprocess per_dataset),
# so the rerun checks below hold for the per-model jobs; tests/slurm runs the defaults (per_dataset, per_fold).
SMOKE = Path(tempfile.mkdtemp(prefix="brainuad-smoke-")) / "config.yaml"
SMOKE.write_text(yaml.safe_dump({**yaml.safe_load(SMOKE_FILE.read_text()),
                                 "jobs": {"reconstruct": "per_model", "train": "per_model",
                                          "preprocess": "per_dataset"}}))
atexit.register(shutil.rmtree, SMOKE.parent, True)
# ... and with the demo's per-model score and evaluate jobs too (config jobs.score / jobs.evaluate: per_model)
SMOKE_GROUPS = SMOKE.with_name("config_groups.yaml")
_smoke = yaml.safe_load(SMOKE.read_text())
SMOKE_GROUPS.write_text(yaml.safe_dump({**_smoke, "jobs": {**_smoke["jobs"], "score": "per_model", "evaluate": "per_model"}}))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str, config: Path = SMOKE, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(config),
           "--replace-workflow-config", *args]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


job_counts = dry_run_job_counts


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    before = set(os.listdir("/tmp"))
    snakemake(workdir, "--cores", "2", "all_tables")
    leaked = {f for f in set(os.listdir("/tmp")) - before if re.search(r"(GenericAffine|Warp)", f)}
    return workdir, leaked


def test_lint_is_clean():
    proc = subprocess.run([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_smoke_run_builds_tables_and_report(smoke_run):
    workdir, leaked = smoke_run
    assert not leaked, f"ANTs temporary files left in /tmp: {leaked}"
    results = workdir / "results"
    pdf = results / "report" / "benchmark.pdf"
    assert pdf.stat().st_size > 20_000 and pdf.read_bytes()[:4] == b"%PDF"
    seg = pd.read_csv(results / "tables" / "segmentation.tsv", sep="\t")
    assert len(seg) == 3 * 2 * 4  # rows x datasets x metrics
    dice = seg[seg.metric == "dice_oracle"]
    assert dice["mean"].between(0, 1).all() and (dice["n_folds"] == 2).all()
    # the learning-free baseline is deterministic: identical folds
    assert (seg[seg.model == "thresh"]["std"].fillna(0) == 0).all()
    rec = pd.read_csv(results / "tables" / "reconstruction.tsv", sep="\t")
    assert set(rec.metric) == {"ssim", "psnr", "l1"} and rec["mean"].notna().all()
    md = (results / "tables" / "segmentation.md").read_text()
    assert "[DICE]" in md and "Thresh" in md
    assert "\\begin{tabular}" in (results / "tables" / "segmentation.tex").read_text()
    metrics = pd.read_csv(results / "eval/healthy_t2/ae/default/fold-0/tumour_t2/l1/metrics.tsv", sep="\t")
    assert {"subject", "split", "dice", "dice_oracle", "auprc", "l1_ratio"} <= set(metrics.columns)
    assert (results / "models/healthy_t2/vae/default/fold-1/train_log.tsv").exists()
    assert (workdir / "work/train/healthy_t2/vae/default/fold-1/state.pt").exists()
    assert not (results / "models/healthy_t2/thresh").exists()  # nothing to train
    # a volume model (vae3d, input_dims 3, with erasing) went through the same train/reconstruct/score/evaluate rules
    with np.load(results / "recon/healthy_t2/vae3d/default/fold-0/tumour_t2.npz") as z:
        assert z["recons"].shape[2:] == (16, 32, 32)
    vol = pd.read_csv(results / "tables" / "volumes.tsv", sep="\t")
    assert vol["mean"].between(0, 1).all() and (vol["n_folds"] == 2).all()


def test_smoke_run_builds_detection_pages_and_protocol_table(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results"
    lw = pd.read_csv(results / "tables" / "lesionwise_detection.tsv", sep="\t")
    assert set(lw["stratum"]) == {"all", "small", "large"} and set(lw["metric"]) == {"lesion_sensitivity", "fp_components"}
    sens = lw[lw.metric == "lesion_sensitivity"]["mean"].dropna()
    assert len(sens) and sens.between(0, 1).all()
    assert (results / "figures" / "lesionwise_detection.png").stat().st_size > 5_000
    fpr = pd.read_csv(results / "tables" / "healthy_fpr_detection.tsv", sep="\t")
    assert sorted(set(fpr["target_fpr"])) == [0.05] and set(fpr["metric"]) == {"dice", "sensitivity", "fpr", "threshold"}
    # each fold applies the threshold of its own healthy evaluation
    healthy = [__import__("json").loads((results / f"eval/healthy_t2/ae/default/fold-{f}/healthy_t2/l1/threshold.json")
                                        .read_text())["fpr_thresholds"]["0.05"] for f in (0, 1)]
    per_fold = [pd.read_csv(results / f"eval/healthy_t2/ae/default/fold-{f}/tumour_t2/l1/fpr.tsv", sep="\t")["threshold"]
                for f in (0, 1)]
    assert [set(t) for t in per_fold] == [{healthy[0]}, {healthy[1]}]
    det = pd.read_csv(results / "tables" / "detection.tsv", sep="\t")
    assert det.set_index("metric")["mean"].drop("fp_components").between(0, 1).all()
    # the no-post-processing table reads its own evaluation, which differs from the default one
    own = pd.read_csv(results / "eval/healthy_t2/ae/default/fold-0/tumour_t2/l1/protocol-erode~0__median~0__min_component~0/"
                      "metrics.tsv", sep="\t")
    plain = pd.read_csv(results / "eval/healthy_t2/ae/default/fold-0/tumour_t2/l1/metrics.tsv", sep="\t")
    assert not np.allclose(own["auprc"].to_numpy(float), plain["auprc"].to_numpy(float), equal_nan=True)
    nopp = pd.read_csv(results / "tables" / "no_postprocessing.tsv", sep="\t")
    got = nopp[(nopp.metric == "auprc")]["fold_values"].iloc[0].split(";")[0]
    assert float(got) == pytest.approx(own[own.split == "test"]["auprc"].mean(), rel=1e-5)


def test_smoke_run_builds_scoring_sweep_and_mhd_figure(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results"
    sweep = pd.read_csv(results / "tables" / "sweep_mhd_n.tsv", sep="\t")
    assert sorted(sweep["value"].astype(str)) == ["2", "3", "reference:mhd_diag"]
    assert sweep["mean"].between(0, 1).all() and (sweep["n_folds"] == 2).all()
    with np.load(results / "recon/healthy_t2/vae/default/fold-0/tumour_t2.npz") as z:
        assert z["recons"].shape[0] == 3  # N stored reconstructions
    # the N=2 sweep value differs from the N=3 (= full) scoring only through the samples used
    with np.load(results / "scores/healthy_t2/vae/default/fold-0/tumour_t2/mhd_full@samples=2.npz") as a, \
            np.load(results / "scores/healthy_t2/vae/default/fold-0/tumour_t2/mhd_full@samples=3.npz") as b, \
            np.load(results / "scores/healthy_t2/vae/default/fold-0/tumour_t2/mhd_full.npz") as c:
        np.testing.assert_array_equal(b["maps"], c["maps"])
        assert not np.array_equal(a["maps"], b["maps"])
    assert (results / "figures" / "mhd.png").stat().st_size > 10_000
    assert (results / "figures" / "sweep_mhd_n.png").stat().st_size > 10_000


def test_smoke_run_builds_model_sweeps(smoke_run):
    workdir, _ = smoke_run
    results = workdir / "results"
    sweep = pd.read_csv(results / "tables" / "sweep_latent.tsv", sep="\t")
    assert set(zip(sweep["model"], sweep["run"])) == {("ae", "latent~4"), ("vae", "latent~4"),
                                                      ("ae", "default"), ("vae", "default")}
    assert set(sweep["metric"]) == {"dice_oracle", "auprc"} and sweep["mean"].between(0, 1).all()
    ckpt = torch.load(results / "models/healthy_t2/vae/latent~4/fold-0/model.pt", weights_only=False)
    assert ckpt["hparams"]["latent_dim"] == 4  # the row's override reached the model
    # a row that changes only reconstruction settings reuses the default run's weights
    assert not (results / "models/healthy_t2/vae/n~2").exists()
    with np.load(results / "recon/healthy_t2/vae/n~2/fold-0/tumour_t2.npz") as z:
        assert z["recons"].shape[0] == 2
    assert (results / "figures" / "sweep_latent.png").stat().st_size > 10_000


def test_editing_one_sweep_row_reruns_only_that_row(smoke_run, tmp_path):
    workdir, _ = smoke_run
    table = tmp_path / "latent.tsv"
    table.write_text("latent\n4\n8\n")  # row 4 unchanged, row 8 new

    def change(cfg):
        cfg["sweeps"]["latent"]["table"] = str(table)

    out = snakemake(workdir, "-n", "all_sweeps", config=_variant(tmp_path, change)).stdout
    counts = job_counts(out)
    assert counts.get("train") == 2, counts  # 2 models (per-model jobs: each trains both folds) of the new row only
    assert len(_train_outputs(out)) == 2 * 2 * 2  # model.pt + train_log.tsv of 2 models x 2 folds
    assert "latent~4" not in "".join(line for line in out.splitlines() if line.strip().startswith("output:"))
    assert set(counts) <= {"train", "reconstruct", "score", "evaluate", "sweep_figure", "all_sweeps"}, counts


def test_second_run_schedules_nothing(smoke_run):
    workdir, _ = smoke_run
    out = snakemake(workdir, "-n", "all_tables").stdout
    assert "Nothing to be done" in out, out[-2000:]


def _variant(tmp_path, change, base: Path = SMOKE) -> Path:
    cfg = yaml.safe_load(base.read_text())
    change(cfg)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(cfg))  # keys come out sorted: params must not care
    return path


def test_threshold_or_postprocessing_change_reruns_no_training(smoke_run, tmp_path):
    workdir, _ = smoke_run

    def change(cfg):
        cfg["evaluation"]["threshold"]["steps"] = 8
        cfg["evaluation"]["median"] = 5

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, change)).stdout)
    metrics = list((workdir / "results" / "eval").rglob("metrics.tsv"))
    own = [m for m in metrics if m.parent.name.startswith("protocol-")]  # tables with their own protocol
    assert own and counts.get("evaluate", 0) == len(metrics) - len(own), counts
    assert counts.get("evaluate_protocol", 0) == len(own), counts  # its other settings come from `evaluation`
    assert "train" not in counts and "reconstruct" not in counts and "score" not in counts, counts
    assert "preprocess" not in counts and "make_phantom" not in counts


def test_new_scoring_schedules_only_scoring_and_downstream(smoke_run, tmp_path):
    workdir, _ = smoke_run

    def change(cfg):
        cfg["scorings"]["l2"] = {"name": "l2"}
        cfg["tables"]["segmentation"]["rows"].append({"model": "ae", "scoring": "l2", "label": "AE l2"})

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, change)).stdout)
    assert counts.get("score") == 4 and counts.get("evaluate") == 4, counts  # 2 datasets x 2 folds
    allowed = {"score", "evaluate", "table_stats", "table", "qualitative_figure", "report", "all_tables"}
    assert set(counts) <= allowed, sorted(set(counts) - allowed)


def test_protocol_change_reruns_only_its_evaluation(smoke_run, tmp_path):
    """A table's `protocol` is evaluated by the evaluate rule into its own folder: changing it plans that
    evaluation (1 row x 1 dataset x 2 folds) and the table and report after it, never scoring or training."""
    workdir, _ = smoke_run

    def change(cfg):
        cfg["tables"]["no_postprocessing"]["protocol"]["threshold"] = {"steps": 5}

    out = snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, change)).stdout
    counts = job_counts(out)
    assert counts.get("evaluate_protocol") == 2 and "evaluate" not in counts, counts
    assert set(counts) <= {"evaluate_protocol", "table_stats", "table", "report", "all_tables"}, counts
    assert "protocol-erode~0__median~0__min_component~0__threshold.steps~5/metrics.tsv" in out

    def same_effect(cfg):  # the table's protocol spelled out per row instead: nothing to redo but the table
        protocol = cfg["tables"]["no_postprocessing"].pop("protocol")
        cfg["tables"]["no_postprocessing"]["rows"][0]["protocol"] = protocol

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, same_effect)).stdout)
    assert "evaluate_protocol" not in counts and "evaluate" not in counts, counts


def test_invalid_config_gives_a_clear_message(tmp_path):
    def change(cfg):
        cfg["datasets"]["ms_t2"]["trainset"] = "tumour_t2"

    proc = snakemake(tmp_path, "-n", "all_tables", config=_variant(tmp_path, change), check=False)
    assert proc.returncode != 0
    assert "datasets.ms_t2.trainset must name a healthy dataset" in proc.stdout + proc.stderr

    def change2(cfg):
        cfg["evaluation"]["median"] = "five"

    proc = snakemake(tmp_path, "-n", "all_tables", config=_variant(tmp_path, change2), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config error: evaluation.median: 'five' is not of type 'integer'" in out
    assert len(out.splitlines()) < 40, out  # the key, not the schema section

    bad_table = tmp_path / "bad.tsv"
    bad_table.write_text("latent\tdepth\n4\t2\n")

    def change3(cfg):
        cfg["sweeps"]["latent"]["table"] = str(bad_table)

    proc = snakemake(tmp_path, "-n", "all_tables", config=_variant(tmp_path, change3), check=False)
    assert proc.returncode != 0
    assert f"{bad_table}: column 'depth' is not mapped under sweeps.latent.set" in proc.stdout + proc.stderr


def test_all_data_target_plans_only_the_data_stage(tmp_path):
    """`all_data` (pre-processing inside one SLURM allocation, README "Cluster") plans data jobs only."""
    counts = job_counts(snakemake(tmp_path, "-n", "all_data").stdout)
    assert {"make_phantom", "manifest"} <= set(counts), counts
    assert set(counts) <= {"make_phantom", "manifest", "preprocess", "pack", "qc", "all_data"}, counts


def test_convention_changes_rerun_only_the_affected_stages(smoke_run, tmp_path):
    """config `conventions`: an SSIM switch reruns the score jobs of the scorings that compute an SSIM (and
    what follows), never l1 / native scores, training or reconstruction; an evaluation switch reruns
    evaluate onward (the order on every dataset, the other three on the pathology sets only), no score."""
    from brainuad.conventions import SSIM_KWARGS

    workdir, _ = smoke_run
    results = workdir / "results"
    roles = {name: ds["role"] for name, ds in yaml.safe_load(SMOKE.read_text())["datasets"].items()}
    ssim_scores = [f for f in (results / "scores").rglob("*.npz") if f.stem.split("@")[0] in SSIM_KWARGS]
    metrics = [m for m in (results / "eval").rglob("metrics.tsv") if not m.parent.name.startswith("protocol-")]
    pathology_metrics = [f for f in metrics if roles[f.parts[-3]] == "pathology"]
    assert ssim_scores and len(pathology_metrics) < len(metrics)
    never = {"train", "pretrain", "reconstruct", "preprocess", "make_phantom", "pack"}

    def ssim(cfg):
        cfg["conventions"] = {"preset": "thesis_text", "ssim_padding": "mirror"}

    out = snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, ssim)).stdout
    counts = job_counts(out)
    assert counts.get("score") == len(ssim_scores), counts
    rerun = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("output:")]
    scored = [o for o in rerun if o.startswith("results/scores/")]
    assert scored and all(Path(o).stem.split("@")[0] in SSIM_KWARGS for o in scored), scored
    assert not never & set(counts), counts

    def evaluation(cfg):
        cfg["conventions"] = {"preset": "thesis_text", "component_rule": "filled_at_most", "auprc_region": "volume",
                              "threshold_ties": "last"}

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, evaluation)).stdout)
    assert counts.get("evaluate") == len(pathology_metrics), counts
    assert "score" not in counts and not never & set(counts), counts

    def order(cfg):
        cfg["conventions"] = {"preset": "thesis_text", "postprocess_order": "mask_first"}

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, order)).stdout)
    assert counts.get("evaluate") == len(metrics), counts
    assert "score" not in counts and not never & set(counts), counts
    # the default's values reached through another preset and switches: only the report (its provenance
    # page names the preset and where each switch comes from) is rebuilt
    def same(cfg):
        cfg["conventions"] = {"preset": "author_code", "ssim_padding": "reflect", "postprocess_order": "median_first",
                              "component_rule": "fewer_than", "auprc_region": "brain", "threshold_ties": "first"}

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, same)).stdout)
    assert set(counts) <= {"report", "all_tables"}, counts


def _recon_outputs(out: str) -> list[str]:
    files = []
    for line in out.splitlines():
        if line.strip().startswith("output:"):
            files += [f.strip() for f in line.split(":", 1)[1].split(",") if "results/recon/" in f]
    return sorted(files)


def _train_outputs(out: str) -> list[str]:
    """Files under results/models/ of the planned jobs (model.pt, train_log.tsv, encoder.pt, pretrain_log.tsv)."""
    files = []
    for line in out.splitlines():
        if line.strip().startswith("output:"):
            files += [f.strip() for f in line.split(":", 1)[1].split(",") if "results/models/" in f]
    return sorted(files)


def test_per_model_reconstruct_jobs_plan_the_per_dataset_files(tmp_path):
    """config jobs.reconstruct: per_model writes exactly the files of the per-dataset jobs, one job per
    (trainset, model, run) instead of one per fold and dataset."""
    per_dataset = snakemake(tmp_path, "-n", "all_tables", config=SMOKE_FILE).stdout
    per_model = snakemake(tmp_path, "-n", "all_tables").stdout
    files = _recon_outputs(per_dataset)
    assert files and _recon_outputs(per_model) == files
    groups = {tuple(f.split("/")[2:5]) for f in files}  # results/recon/<trainset>/<model>/<run>/fold-F/<dataset>.npz
    assert len(files) > len(groups)
    assert job_counts(per_dataset)["reconstruct"] == len(files)
    assert job_counts(per_model)["reconstruct"] == len(groups)
    assert len(re.findall(r"^\s*rule reconstruct__healthy_t2__anoddpm_ens__default:", per_model, re.M)) == 1


def test_per_model_train_jobs_plan_the_per_fold_files(tmp_path):
    """config jobs.train: per_model writes exactly the files of the per-fold train, train_stage2 and
    pretrain_encoder jobs, one job per (trainset, model, run) instead of one per fold."""
    per_fold = snakemake(tmp_path, "-n", "all_tables", config=SMOKE_FILE).stdout
    per_model = snakemake(tmp_path, "-n", "all_tables").stdout
    files = _train_outputs(per_fold)
    assert files and _train_outputs(per_model) == files and len(set(files)) == len(files)
    for rule, name in (("train", "model.pt"), ("train_stage2", "model.pt"), ("pretrain_encoder", "encoder.pt")):
        fold_jobs, model_jobs = job_counts(per_fold)[rule], job_counts(per_model)[rule]
        assert model_jobs < fold_jobs, (rule, model_jobs, fold_jobs)
        assert not re.search(rf"^\s*rule {rule}:", per_model, re.M)  # every file from a per-model rule
    # models: {ae, vae} x {default, latent~4}, anoddpm, cddpm_ssl, vae3d -> train; sadm_tumour -> train_stage2
    assert (job_counts(per_fold)["train"], job_counts(per_model)["train"]) == (14, 7)
    assert (job_counts(per_fold)["train_stage2"], job_counts(per_model)["train_stage2"]) == (2, 1)
    assert len(re.findall(r"^\s*rule train__healthy_t2__ae__latent_4:", per_model, re.M)) == 1


def test_per_model_train_keeps_the_per_fold_rule_for_files_outside_every_group(tmp_path):
    """ruleorder: a model file of a group comes from the group's rule (all its folds); a model file no target
    of the config reads (here a model in no table) still has a producer, the per-fold rule."""
    def change(cfg):
        cfg["models"]["ae_extra"] = cfg["models"]["ae"]

    config = _variant(tmp_path, change)
    grouped = snakemake(tmp_path, "-n", "results/models/healthy_t2/ae/default/fold-1/model.pt", config=config).stdout
    assert job_counts(grouped).get("train") == 1 and re.search(r"^\s*rule train__healthy_t2__ae__default:", grouped, re.M)
    assert _train_outputs(grouped) == [f"results/models/healthy_t2/ae/default/fold-{f}/{name}"
                                       for f in (0, 1) for name in ("model.pt", "train_log.tsv")]
    alone = snakemake(tmp_path, "-n", "results/models/healthy_t2/ae_extra/default/fold-1/model.pt", config=config).stdout
    assert job_counts(alone).get("train") == 1 and re.search(r"^\s*rule train:", alone, re.M)
    assert _train_outputs(alone) == ["results/models/healthy_t2/ae_extra/default/fold-1/model.pt",
                                     "results/models/healthy_t2/ae_extra/default/fold-1/train_log.tsv"]


def test_per_model_train_hparams_rerun_only_that_model(smoke_run, tmp_path):
    """A hyper-parameter of one model retrains that model's one per-model job (both folds) and what reads it; no
    other model is retrained."""
    workdir, _ = smoke_run

    def change(cfg):
        cfg["models"]["vae3d"]["hparams"]["latent_dim"] = 4

    out = snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, change)).stdout
    counts = job_counts(out)
    assert counts.get("train") == 1, counts
    assert _train_outputs(out) == [f"results/models/healthy_t2/vae3d/default/fold-{f}/{name}"
                                   for f in (0, 1) for name in ("model.pt", "train_log.tsv")]
    assert not {"train_stage2", "pretrain_encoder", "preprocess", "make_phantom", "pack"} & set(counts), counts


def test_per_model_reconstruct_setting_reruns_only_that_model(smoke_run, tmp_path):
    """A reconstruct setting of one model reruns that model's one per-model job (both folds) and its
    scoring onward; no training, no other model's reconstruction."""
    workdir, _ = smoke_run

    def change(cfg):
        cfg["models"]["anoddpm_ens"]["reconstruct"]["noise_level"] = [250, 500]

    out = snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, change)).stdout
    counts = job_counts(out)
    assert counts.get("reconstruct") == 1, counts
    assert _recon_outputs(out) == [f"results/recon/healthy_t2/anoddpm_ens/default/fold-{f}/tumour_t2.npz" for f in (0, 1)]
    assert not {"train", "pretrain_encoder", "preprocess", "make_phantom", "pack"} & set(counts), counts


def _outputs(out: str, folder: str) -> list[str]:
    """Output files below ``folder`` of the jobs a dry-run plans."""
    files = []
    for line in out.splitlines():
        if line.strip().startswith("output:"):
            files += [f.strip() for f in line.split(":", 1)[1].split(",") if f.strip().startswith(folder)]
    return sorted(files)


def test_per_model_score_and_evaluate_jobs_plan_the_per_scoring_files(tmp_path):
    """config jobs.score / jobs.evaluate: per_model plan exactly the files of the per-scoring jobs (evaluate,
    evaluate_protocol, evaluate_fpr included), one job of each per (trainset, model, run); the per-scoring rule
    still writes a file that no group writes."""
    per_scoring = snakemake(tmp_path, "-n", "all_tables").stdout
    per_model = snakemake(tmp_path, "-n", "all_tables", config=SMOKE_GROUPS).stdout
    for folder in ("results/scores/", "results/eval/"):
        files = _outputs(per_scoring, folder)
        assert files and _outputs(per_model, folder) == files, folder
    groups = {tuple(f.split("/")[2:5]) for f in _outputs(per_scoring, "results/scores/")}
    before, after = job_counts(per_scoring), job_counts(per_model)
    assert before["score"] == len(_outputs(per_scoring, "results/scores/")) > len(groups) == 12
    assert after["score"] == after["evaluate"] == len(groups), after
    assert before["evaluate_protocol"] and before["evaluate_fpr"] and not {"evaluate_protocol", "evaluate_fpr"} & set(after)
    assert len(re.findall(r"^\s*rule evaluate__healthy_t2__ae__default:", per_model, re.M)) == 1
    # no group writes the mean_ssim scores of the AE (no table, sweep or figure reads them): rule score does
    folder = "results/scores/healthy_t2/ae/default/fold-0/tumour_t2"
    out = snakemake(tmp_path, "-n", f"{folder}/mean_ssim.npz", f"{folder}/l1.npz", config=SMOKE_GROUPS).stdout
    assert re.search(r"^rule score:\n.*\n\s*output: " + re.escape(f"{folder}/mean_ssim.npz") + "$", out, re.M), out
    assert re.search(r"^rule score__healthy_t2__ae__default:", out, re.M), out


def test_per_model_score_and_evaluate_write_the_per_scoring_files(smoke_run, tmp_path):
    """Switching a finished per-scoring run to per-model score and evaluate jobs reruns them (their params
    change) and writes byte-identical evaluations and identical score arrays; afterwards a changed scoring reruns
    only the score and evaluate jobs of the models that use it, a changed protocol only evaluate jobs."""
    workdir, _ = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy, symlinks=True)  # keeps mtimes: the copy is as up to date as the run
    planned = job_counts(snakemake(copy, "-n", "all_tables", config=SMOKE_GROUPS).stdout)
    assert planned.get("score") == planned.get("evaluate") == 12, planned
    assert not {"train", "reconstruct", "evaluate_protocol", "evaluate_fpr", "preprocess"} & set(planned), planned
    snakemake(copy, "--cores", "2", "all_tables", config=SMOKE_GROUPS)
    assert (copy / "results/benchmarks/score/healthy_t2/ae/default/all.tsv").exists()  # bench_startup's layout
    assert (copy / "results/benchmarks/evaluate/healthy_t2/ae/default/all.tsv").exists()
    scores = sorted(p.relative_to(workdir) for p in (workdir / "results" / "scores").rglob("*.npz"))
    evals = sorted(p.relative_to(workdir) for p in (workdir / "results" / "eval").rglob("*") if p.is_file())
    assert len(scores) == 52 and len(evals) == 2 * 53 + 2
    for rel in scores:
        assert (copy / rel).stat().st_mtime > (workdir / rel).stat().st_mtime, rel  # really written again
        with np.load(workdir / rel) as a, np.load(copy / rel) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a.files), rel
    for rel in evals:
        assert (copy / rel).read_bytes() == (workdir / rel).read_bytes(), rel

    def beta(cfg):  # a scoring only the SADM rows use
        cfg["scorings"]["sadm"]["beta"] = 0.8

    out = snakemake(copy, "-n", "all_tables", config=_variant(tmp_path, beta, SMOKE_GROUPS)).stdout
    counts = job_counts(out)
    assert counts.get("score") == counts.get("evaluate") == 1, counts
    assert re.search(r"^rule score__healthy_t2__sadm_tumour__default:", out, re.M)
    assert not {"train", "train_stage2", "reconstruct", "pretrain_encoder"} & set(counts), counts

    def protocol(cfg):
        cfg["tables"]["no_postprocessing"]["protocol"]["threshold"] = {"steps": 5}

    out = snakemake(copy, "-n", "all_tables", config=_variant(tmp_path, protocol, SMOKE_GROUPS)).stdout
    counts = job_counts(out)
    assert counts.get("evaluate") == 1 and re.search(r"^rule evaluate__healthy_t2__ae__default:", out, re.M), counts
    assert set(counts) <= {"evaluate", "table_stats", "table", "lesionwise", "healthy_fpr_table", "qualitative_figure",
                           "sweep_figure", "claims", "p81_analysis", "mhd_figure", "report", "all_tables"}, counts


def test_sadm_beta_reruns_only_scoring_and_stage1_change_reruns_stage2(smoke_run, tmp_path):
    """SADM (P8.6): beta is a scoring parameter (score onward only); Stage II consumes the Stage I model.pt, so a
    Stage I change retrains Stage II; the Stage II training subject is out of the test split; the recon files of
    the Stage II model hold the reconstructions and the Unet prediction."""
    workdir, _ = smoke_run
    results = workdir / "results"
    splits = yaml.safe_load((results / "splits" / "tumour_t2.json").read_text())
    assert len(splits["train"]) == 1 and not set(splits["train"]) & (set(splits["test"]) | set(splits["val"]))
    with np.load(results / "recon" / "healthy_t2" / "sadm_tumour" / "default" / "fold-0" / "tumour_t2.npz") as z:
        assert {"recons", "maps"} <= set(z.files) and not set(splits["train"]) & set(z["subjects"].tolist())
        assert z["maps"].shape == z["recons"].shape[1:]

    def beta(cfg):
        cfg["scorings"]["sadm"]["beta"] = 0.8

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, beta)).stdout)
    assert counts.get("score") == 4 and counts.get("evaluate") == 4, counts  # 1 row x 2 datasets x 2 folds
    assert not {"train", "train_stage2", "reconstruct", "pretrain_encoder"} & set(counts), counts

    def stage1(cfg):
        cfg["models"]["cddpm_ssl"]["train"]["max_steps"] = 2

    counts = job_counts(snakemake(workdir, "-n", "all_tables", config=_variant(tmp_path, stage1)).stdout)
    assert counts.get("train_stage2") == 1, counts  # one per-model job for both folds


def test_viewer_maps_overlay_the_raw_scans(smoke_run):
    """all_maps is not part of all_tables; one evaluation's folder as target writes the four files per test
    subject, the _raw ones on the raw scan's grid."""
    import nibabel as nib

    workdir, _ = smoke_run
    assert "viewer_maps" not in snakemake(workdir, "-n", "all_tables").stdout
    planned = job_counts(snakemake(workdir, "-n", "all_maps").stdout)
    # fold 0 of every distinct (model, run, scoring) row on its tables' pathology sets: segmentation 3 rows x 2 sets,
    # diffusion 3 x 1, volumes 1 x 1, sadm 3 rows x 2 sets; detection / no_postprocessing repeat segmentation's AE
    assert planned.get("viewer_maps") == 3 * 2 + 3 + 1 + 3 * 2
    target = "results/maps/healthy_t2/ae/default/fold-0/tumour_t2/l1"
    snakemake(workdir, "--cores", "2", target)
    index = pd.read_csv(workdir / target / "index.tsv", sep="\t")
    assert len(index) >= 1
    for row in index.itertuples():
        raw = nib.load(str(workdir / row.raw_image))
        seg_raw = nib.load(str(workdir / target / row.seg_raw))
        assert seg_raw.shape == raw.shape[:3] and np.allclose(seg_raw.affine, raw.affine, atol=1e-4)
        pre = nib.load(str(workdir / "results/data/tumour_t2/nifti" / f"{row.subject}_image.nii.gz"))
        amap = nib.load(str(workdir / target / row.map))
        assert amap.shape == pre.shape and np.allclose(amap.affine, pre.affine, atol=1e-4)
        assert int(np.count_nonzero(np.asarray(nib.load(str(workdir / target / row.seg)).dataobj))) == row.predicted_voxels

"""brainuad.study on the smoke config: weights_from, sweeps, run reuse, cross-checks, planned files; and
the path patterns of brainuad.paths. No Snakemake run (only its config validation fills the defaults)."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake.utils import Paramspace, validate

from brainuad import paths
from brainuad.study import RUN, Study, read_model_sweep, run_ids

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SMOKE = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())


def smoke_config(change=None) -> dict:
    cfg = copy.deepcopy(SMOKE)
    if change:
        change(cfg)
    validate(cfg, str(SCHEMA))
    return cfg


def study(change=None) -> Study:
    return Study(smoke_config(change), ROOT)


def config_error(change) -> str:
    with pytest.raises(ValueError) as err:
        study(change)
    return str(err.value)


# ---------------------------------------------------------------- weights_from


def test_weights_from_model_takes_the_weight_sections_of_its_source():
    s = study()
    ens, source = s.models["anoddpm_ens"], s.models["anoddpm"]
    for key in ("arch", "hparams", "train"):
        assert ens[key] == source[key]
    assert ens["hparams"] is not source["hparams"]  # a copy, not shared
    assert ens["reconstruct"] == {"noise_level": [250, 750]}
    assert s.weights_model("anoddpm_ens") == "anoddpm" and s.weights_model("anoddpm") == "anoddpm"
    assert s.model_file("healthy_t2", "anoddpm_ens", RUN, 1) == "results/models/healthy_t2/anoddpm/default/fold-1/model.pt"


def test_weights_from_model_may_not_change_the_weights():
    def change(cfg):
        cfg["models"]["anoddpm_ens"]["hparams"] = {"channels": [8, 16], "res_blocks": 1}

    assert config_error(change) == ("config error: models.anoddpm_ens.hparams differs from models.anoddpm.hparams; "
                                    "a weights_from model may change only label and reconstruct settings")

    def chained(cfg):
        cfg["models"]["ens2"] = {"weights_from": "anoddpm_ens"}

    assert "models.ens2.weights_from: 'anoddpm_ens' must name a model that trains its own weights" in config_error(chained)


# ---------------------------------------------------------------- scoring sweeps


def test_scoring_sweep_values_get_their_own_scoring_ids():
    s = study()
    assert s.sweep_ids("mhd_n") == ["mhd_full@samples=2", "mhd_full@samples=3"]
    assert s.scorings["mhd_full@samples=2"] == {"name": "mhd_full", "lam": 0.01, "samples": 2}
    assert s.sweep_value_id(s.scoring_sweeps["mhd_n"], 7) == "mhd_full@samples=7"
    # the value the base scoring already uses is the base scoring itself
    assert s.sweep_value_id({"scoring": "mhd_full", "param": "lam"}, 0.01) == "mhd_full"
    assert s.sweep_ids("latent") == []


def test_scoring_sweep_of_an_unknown_scoring_is_an_error():
    def change(cfg):
        cfg["scoring_sweeps"]["mhd_n"]["scoring"] = "nope"

    assert config_error(change) == "config error: scoring_sweeps.mhd_n.scoring 'nope' is not under scorings"


# ---------------------------------------------------------------- model sweeps


def test_model_sweep_rows_give_paramspace_run_ids(tmp_path):
    table = tmp_path / "sweep.tsv"
    table.write_text("# comment line\nlatent\tlr\n4\t0.001\n16\t0.0001\n")
    spec = {"table": str(table), "set": {"latent": "hparams.latent_dim", "lr": "train.lr"}}
    runs = read_model_sweep("s", spec, ROOT)
    assert runs == {"latent~4__lr~0.001": {"hparams.latent_dim": 4, "train.lr": 0.001},
                    "latent~16__lr~0.0001": {"hparams.latent_dim": 16, "train.lr": 0.0001}}
    df = pd.read_csv(table, sep="\t", dtype=str, keep_default_na=False, comment="#")
    space = Paramspace(df, filename_params="*", param_sep="~", filename_sep="__")
    assert run_ids(df) == list(space.instance_patterns) == list(runs)


def test_model_sweep_table_errors(tmp_path):
    spec = {"set": {"latent": "hparams.latent_dim"}}
    with pytest.raises(ValueError, match="does not exist"):
        read_model_sweep("s", {**spec, "table": str(tmp_path / "missing.tsv")}, ROOT)
    bad = tmp_path / "bad.tsv"
    bad.write_text("latent\tdepth\n4\t2\n")
    with pytest.raises(ValueError, match=f"config error: {bad}: column 'depth' is not mapped under sweeps.s.set"):
        read_model_sweep("s", {**spec, "table": str(bad)}, ROOT)
    dup = tmp_path / "dup.tsv"
    dup.write_text("latent\n4\n4\n")
    with pytest.raises(ValueError, match="duplicate row"):
        read_model_sweep("s", {**spec, "table": str(dup)}, ROOT)
    odd = tmp_path / "odd.tsv"
    odd.write_text("latent\na b\n")
    with pytest.raises(ValueError, match="gives the run id 'latent~a b'"):
        read_model_sweep("s", {**spec, "table": str(odd)}, ROOT)


def test_sweep_rows_override_the_model_entry_and_reuse_training_when_they_can():
    s = study()
    assert set(s.runs) == {("ae", "latent~4"), ("vae", "latent~4"), ("cddpm_ssl", "crop~0.5"), ("vae", "n~2")}
    assert s.run_ids == ["crop~0.5", "default", "latent~4", "n~2"]
    assert s.model_entry("ae", "latent~4")["hparams"] == {"channels": [4, 8], "latent_dim": 4}
    assert s.models["ae"]["hparams"]["latent_dim"] == 8  # the config entry is untouched
    assert s.model_entry("cddpm_ssl", "crop~0.5")["reconstruct"] == {"attributes": {"encoder_crop": 0.5}}
    # a hparams row trains its own model; a reconstruct row reuses the default run's weights
    assert s.train_run("ae", "latent~4") == "latent~4"
    assert s.train_run("vae", "n~2") == RUN
    assert s.model_file("healthy_t2", "vae", "n~2", 0) == "results/models/healthy_t2/vae/default/fold-0/model.pt"
    assert s.model_file("healthy_t2", "thresh", RUN, 0) is None
    assert s.reconstruct_settings("vae", "n~2") == {"batch_size": 16, "samples": 2}
    assert s.train_settings("ae", "latent~4", "1")["seed"] == 12
    assert s.encoder_file("healthy_t2", "cddpm_ssl", RUN, 0) == "results/models/healthy_t2/cddpm_ssl/default/fold-0/encoder.pt"
    assert s.encoder_file("healthy_t2", "ae", RUN, 0) is None
    with pytest.raises(ValueError, match="run 'latent~4' is not a sweep row of model 'thresh'"):
        s.model_entry("thresh", "latent~4")
    assert s.sweep_points("latent") == [{"run": "latent~4", "value": 4}]


def test_model_sweep_keys_must_name_an_override_section():
    cfg = smoke_config()
    cfg["sweeps"]["latent"]["set"] = {"latent": "arch"}  # the schema rejects it too; the study does not rely on that
    with pytest.raises(ValueError) as err:
        Study(cfg, ROOT)
    assert str(err.value) == ("config error: sweeps.latent.set: 'arch' must start with one of hparams., train., "
                                    "reconstruct.")


# ---------------------------------------------------------------- cross-checks


@pytest.mark.parametrize("change, message", [
    (lambda cfg: cfg["datasets"]["ms_t2"].update(trainset="tumour_t2"),
     "datasets.ms_t2.trainset must name a healthy dataset, got 'tumour_t2'"),
    (lambda cfg: cfg["datasets"]["ms_t2"].update(sequence="t1"),
     "datasets.ms_t2 (t1) is evaluated with models trained on healthy_t2 (t2); sequences must match (or set "
     "cross_sequence: true)"),
    (lambda cfg: cfg["tables"]["segmentation"]["rows"].append({"model": "nope"}),
     "tables.segmentation: unknown model 'nope'"),
    (lambda cfg: cfg["tables"]["reconstruction"].update(datasets=["tumour_t2"]),
     "tables.reconstruction (reconstruction) needs healthy datasets, 'tumour_t2' is pathology"),
    (lambda cfg: cfg["sweeps"].update(mhd_n=cfg["sweeps"]["latent"]),
     "sweeps.mhd_n: the name is also a scoring sweep; sweep names must be unique"),
    (lambda cfg: cfg["report"]["domain_shift"].update(models=["thresh"]),
     "report.domain_shift.models: 'thresh' is not a trainable model"),
    (lambda cfg: cfg["report"].update(qualitative={"table": "reconstruction"}),
     "report.qualitative: 'reconstruction' is not a segmentation table"),
    (lambda cfg: cfg["datasets"]["ms_t2"].update(cohort="nope"),
     "datasets.ms_t2.cohort 'nope' is not a cohort of sources.phantom (healthy, tumour, ms)"),
])


def test_cross_check_errors(change, message):
    assert config_error(change) == f"config error: {message}"


def test_cross_sequence_evaluation_is_allowed_when_asked_for():
    """P8.1-Tab2: T1 models on T1ce data -- only with datasets.<name>.cross_sequence."""
    s = study(lambda cfg: cfg["datasets"]["ms_t2"].update(sequence="t1", cross_sequence=True))
    assert s.trainset_of("ms_t2") == "healthy_t2"


def test_misspelled_source_options_stop_at_config_time():
    """A misspelled adapter option (here label_value for wmh's label keys) names the key and the accepted ones
    at parse time instead of failing in the manifest job."""
    from brainuad.data.sources import source_options

    def add_wmh(options=None, cohorts=None):
        def change(cfg):
            cfg["sources"]["wmh"] = {"kind": "wmh", "root": "/nowhere", "options": options or {},
                                     "cohorts": cohorts or {}}
        return change

    accepted = ", ".join(source_options("wmh"))
    assert config_error(add_wmh({"label_value": 1})) == (
        f"config error: sources.wmh.options.label_value: unknown option for kind 'wmh'; accepted: {accepted}")
    assert config_error(add_wmh(cohorts={"utrecht": {"label_values": [1], "lable": 2}})).startswith(
        "config error: sources.wmh.cohorts.utrecht.lable: unknown option for kind 'wmh'")
    assert config_error(add_wmh({"strict": True})) == (
        "config error: sources.wmh.options.strict: not an option of a source; set it as sources.<name>.strict")
    study(add_wmh({accepted.split(", ")[0]: None}))  # an accepted key passes (the schema leaves the value open)


def test_pathology_set_must_share_the_grid_of_its_trainset():
    def change(cfg):
        cfg["sources"]["other"] = {**cfg["sources"]["phantom"], "preprocess": {"downsample": 1}}
        cfg["datasets"]["ms_t2"]["source"] = "other"

    assert config_error(change) == ("config error: datasets.ms_t2: preprocess downsample 1 differs from that of its "
                                    "trainset healthy_t2 (2); the volumes must have the same grid")


# ---------------------------------------------------------------- planned files


def test_table_rows_get_their_defaults():
    rows = study().table_rows["diffusion"]
    d = {"scoring": "l1", "run": RUN, "protocol": "default"}
    assert rows == [{"model": "anoddpm", **d}, {"model": "anoddpm_ens", **d}, {"model": "cddpm_ssl", **d}]
    assert "scoring" not in SMOKE["tables"]["diffusion"]["rows"][0]


def test_planned_eval_files_of_a_table():
    def change(cfg):
        cfg["tables"]["segmentation"]["rows"] = [{"model": "thresh", "scoring": "native"}, {"model": "ae"}]

    files = study(change).table_metric_files("segmentation")
    expected = []
    for model, scoring in (("thresh", "native"), ("ae", "l1")):
        for ds in ("tumour_t2", "ms_t2"):
            for fold in (0, 1):
                d = f"results/eval/healthy_t2/{model}/default/fold-{fold}/{ds}/{scoring}"
                expected += [f"{d}/metrics.tsv", f"{d}/threshold.json"]
    assert files == expected


def test_planned_model_and_figure_files():
    s = study()
    models = s.all_model_files()
    assert models == sorted(f"results/models/healthy_t2/{m}/default/fold-{f}/model.pt"
                            for m in ("ae", "vae", "anoddpm", "cddpm_ssl", "vae3d", "sadm_tumour") for f in (0, 1))
    assert s.train_logs() == [f.replace("model.pt", "train_log.tsv") for f in models]
    assert s.domain_shift_files("npz") == ["results/analysis/domain_shift/healthy_t2/anoddpm/default/fold-0.npz"]
    assert s.mhd_figure_inputs()["threshold"] == "results/eval/healthy_t2/vae/default/fold-0/tumour_t2/mhd_full/threshold.json"
    assert s.report_figures()[:3] == ["results/figures/qualitative_segmentation.png", "results/figures/qualitative_sadm.png",
                                      "results/figures/training_curves.png"]
    assert s.all_sweep_files()[0] == "results/figures/sweep_mhd_n.png"
    # the model sweep's reference run is planned with its points
    assert "results/eval/healthy_t2/ae/default/fold-1/tumour_t2/l1/metrics.tsv" in s.sweep_inputs("latent")
    qual = s.qualitative_inputs("segmentation")
    assert "results/recon/healthy_t2/ae/default/fold-0/ms_t2.npz" in qual
    assert not any(f.startswith("results/recon/healthy_t2/thresh/") for f in qual)  # learning-free: no recon


def test_model_sweep_on_chosen_folds_plans_only_those_folds():
    """sweeps.<name>.folds: rows and reference are trained and evaluated on the listed folds only."""
    def change(cfg):
        cfg["sweeps"]["latent"]["folds"] = [1]

    s = study(change)
    assert s.sweep_folds("latent") == [1] and study().sweep_folds("latent") == [0, 1]
    files = s.sweep_inputs("latent")
    expected = [f"results/eval/healthy_t2/{model}/{run}/fold-1/tumour_t2/l1/{name}"
                for model in ("ae", "vae") for run in ("latent~4", "default") for name in ("metrics.tsv", "threshold.json")]
    assert files == expected
    # the row latent~4 is planned for training on fold 1 only; the default run keeps both folds (tables use it)
    recons = s.recon_files()
    assert "results/recon/healthy_t2/ae/latent~4/fold-1/tumour_t2.npz" in recons
    assert not any("/latent~4/fold-0/" in f for f in recons)
    assert "results/recon/healthy_t2/ae/default/fold-0/tumour_t2.npz" in recons
    assert "does not exist" in config_error(lambda cfg: cfg["sweeps"]["latent"].update(folds=[2]))


def test_recon_groups_cover_every_planned_reconstruction_once():
    s = study()
    groups = s.recon_groups()
    outputs = [job["output"] for jobs in groups.values() for job in jobs]
    assert sorted(outputs) == s.recon_files() and len(set(outputs)) == len(outputs)
    jobs = groups[("healthy_t2", "anoddpm_ens", "default")]  # weights_from anoddpm; the diffusion table's dataset
    assert [(j["fold"], j["dataset"]) for j in jobs] == [(0, "tumour_t2"), (1, "tumour_t2")]
    assert jobs[1]["model_file"] == "results/models/healthy_t2/anoddpm/default/fold-1/model.pt"
    assert all(j["model_file"] is None for j in groups[("healthy_t2", "thresh", "default")])
    assert study().group_rule("reconstruct", "healthy_t2", "cddpm", "t_test~250") == "reconstruct__healthy_t2__cddpm__t_test_250"


def test_train_groups_cover_every_planned_model_file_once():
    """config jobs.train per_model: the groups train every model.pt the smoke run reads exactly once -- the
    tables' models, the latent sweep's retrained rows (not the rows that only change reconstruction), the
    domain-shift model and SADM's Stage I -- each fold with the settings and inputs of its per-fold job."""
    s = study()
    assert s.train_jobs() == "per_fold" and study(lambda c: c.update(jobs={"train": "per_model"})).train_jobs() == "per_model"
    expected = sorted(f"results/models/healthy_t2/{m}/{run}/fold-{f}/model.pt" for f in (0, 1) for m, run in [
        ("ae", "default"), ("ae", "latent~4"), ("vae", "default"), ("vae", "latent~4"), ("anoddpm", "default"),
        ("cddpm_ssl", "default"), ("vae3d", "default"), ("sadm_tumour", "default")])
    assert s.model_files() == expected
    groups = s.train_groups()
    trained = [j["model"] for (rule, *_), jobs in groups.items() if rule != "pretrain_encoder" for j in jobs]
    assert sorted(trained) == expected and len(set(trained)) == len(trained)
    assert {key[0] for key in groups} == {"train", "train_stage2", "pretrain_encoder"}
    assert s.train_groups("train_stage2").keys() == {("train_stage2", "healthy_t2", "sadm_tumour", "default")}
    ae = groups[("train", "healthy_t2", "ae", "latent~4")]
    assert [j["fold"] for j in ae] == [0, 1] and [j["settings"]["seed"] for j in ae] == [11, 12]
    assert ae[1] == {"fold": 1, "model": "results/models/healthy_t2/ae/latent~4/fold-1/model.pt",
                     "log": "results/models/healthy_t2/ae/latent~4/fold-1/train_log.tsv",
                     "workdir": "work/train/healthy_t2/ae/latent~4/fold-1", "settings": s.train_settings("ae", "latent~4", 1),
                     "volumes": "results/data/healthy_t2/volumes.npz", "splits": "results/splits/healthy_t2.json",
                     "encoder": None}
    cddpm = groups[("train", "healthy_t2", "cddpm_ssl", "default")]
    encoders = groups[("pretrain_encoder", "healthy_t2", "cddpm_ssl", "default")]
    assert [j["encoder"] for j in cddpm] == [j["encoder"] for j in encoders] == [
        f"results/models/healthy_t2/cddpm_ssl/default/fold-{f}/encoder.pt" for f in (0, 1)]
    assert encoders[0]["log"] == "results/models/healthy_t2/cddpm_ssl/default/fold-0/pretrain_log.tsv"
    assert encoders[1]["workdir"] == "work/pretrain/healthy_t2/cddpm_ssl/default/fold-1"
    assert encoders[1]["settings"] == s.pretrain_settings("cddpm_ssl", "default", 1)
    sadm = groups[("train_stage2", "healthy_t2", "sadm_tumour", "default")]
    assert [j["stage1"] for j in sadm] == [f"results/models/healthy_t2/cddpm_ssl/default/fold-{f}/model.pt" for f in (0, 1)]
    assert sadm[0]["volumes"] == "results/data/tumour_t2/volumes.npz"  # its labelled training data
    assert s.group_rule("train", "healthy_t2", "ae", "latent~4") == "train__healthy_t2__ae__latent_4"


def test_train_groups_share_an_encoder_and_add_the_models_only_an_analysis_reads():
    """A model with pretrain_from reads the other model's encoders (pre-trained once, in that model's group); a
    model only the domain-shift analysis reads is trained at the analysis' fold only."""
    def change(cfg):
        cfg["models"]["rd"] = {"arch": "rd", "pretrain_from": "cddpm_ssl", "train": {"max_steps": 2, "batch_size": 4},
                               "hparams": {"backbone": {"kind": "ssl", "channels": [4, 8], "blocks": [1, 1],
                                                        "context_dim": 8}}}
        cfg["tables"]["segmentation"]["rows"].append({"model": "rd", "scoring": "native"})
        cfg["models"]["ae_shift"] = cfg["models"]["ae"]
        cfg["report"]["domain_shift"]["models"].append("ae_shift")

    s = study(change)
    groups = s.train_groups()
    assert [j["encoder"] for j in groups[("train", "healthy_t2", "rd", "default")]] == [
        f"results/models/healthy_t2/cddpm_ssl/default/fold-{f}/encoder.pt" for f in (0, 1)]
    assert [key for key in groups if key[0] == "pretrain_encoder"] == [("pretrain_encoder", "healthy_t2", "cddpm_ssl", "default")]
    assert len(groups[("pretrain_encoder", "healthy_t2", "cddpm_ssl", "default")]) == 2
    assert [j["model"] for j in groups[("train", "healthy_t2", "ae_shift", "default")]] == [
        "results/models/healthy_t2/ae_shift/default/fold-0/model.pt"]
def test_score_and_evaluate_groups_cover_every_file_the_targets_read():
    """jobs.score / jobs.evaluate: per_model -- one group per (trainset, model, run) with every score and
    evaluation file of that model the run's targets read (tables, protocols, healthy FPR, MHD figure)."""
    s = study()
    assert (s.score_jobs(), s.evaluate_jobs()) == ("per_scoring", "per_scoring")  # the default: clusters
    per_model = study(lambda cfg: cfg.update(jobs={"score": "per_model", "evaluate": "per_model"}))
    assert (per_model.score_jobs(), per_model.evaluate_jobs()) == ("per_model", "per_model")
    scores, evals = s.score_groups(), s.evaluate_groups()
    assert set(scores) == set(evals) and len(scores) == 12
    # ae: reconstruction table (healthy_t2), segmentation (tumour_t2, ms_t2), detection (tumour_t2) and the
    # protocol table (tumour_t2, median/erode/min_component 0); detection's healthy-FPR evaluation last
    ae = evals[("healthy_t2", "ae", "default")]
    pid = "erode~0__median~0__min_component~0"
    assert [(j["kind"], j["fold"], j["dataset"], j["protocol"]) for j in ae] == [
        ("evaluate", f, ds, p) for f in (0, 1) for ds, p in (("healthy_t2", "default"), ("ms_t2", "default"),
                                                             ("tumour_t2", "default"), ("tumour_t2", pid))
    ] + [("fpr", 0, "tumour_t2", "default"), ("fpr", 1, "tumour_t2", "default")]
    assert ae[3]["threshold"] == f"results/eval/healthy_t2/ae/default/fold-0/tumour_t2/l1/protocol-{pid}/threshold.json"
    assert ae[3]["options"] == s.evaluation_options(pid) and ae[3]["options"]["median"] == 0
    assert ae[2]["options"]["median"] == SMOKE["evaluation"]["median"] and ae[0]["role"] == "healthy"
    assert ae[-1]["healthy"] == ae[4]["threshold"] == "results/eval/healthy_t2/ae/default/fold-1/healthy_t2/l1/threshold.json"
    assert ae[-1]["output"] == "results/eval/healthy_t2/ae/default/fold-1/tumour_t2/l1/fpr.tsv"
    # vae: the MHD figure reads S_mean (mean_ssim) of fold 0 only, which no table evaluates
    vae_scores = [(j["fold"], j["dataset"], j["scoring"]) for j in scores[("healthy_t2", "vae", "default")]]
    vae_evals = [(j["fold"], j["dataset"], j["scoring"]) for j in evals[("healthy_t2", "vae", "default")]]
    assert (0, "tumour_t2", "mean_ssim") in vae_scores and (1, "tumour_t2", "mean_ssim") not in vae_scores
    assert (0, "tumour_t2", "mean_ssim") not in vae_evals and (0, "tumour_t2", "mhd_full") in vae_evals
    # each group's evaluations read only scores its score group writes, with the per-scoring rules' params
    for key, jobs in evals.items():
        written = {j["output"]: j for j in scores[key]}
        for job in jobs:
            assert job["scores"] in written
            assert written[job["scores"]]["params"] == s.scoring_params(written[job["scores"]]["scoring"])
            assert job["conventions"] == s.evaluation_conventions(job["dataset"])
    outputs = {f for jobs in evals.values() for j in jobs for f in (j.get("threshold"), j.get("metrics"), j.get("output"))}
    for table in s.tables:
        assert set(s.table_metric_files(table)) <= outputs
    assert set(s.fpr_files("detection")) <= outputs
    assert s.mhd_figure_inputs()["mean"] in {j["output"] for j in scores[("healthy_t2", "vae", "default")]}
    assert s.group_rule("evaluate", "healthy_t2", "cddpm", "t_test~250") == "evaluate__healthy_t2__cddpm__t_test_250"


def test_a_model_only_a_protocol_table_shows_is_reconstructed_scored_and_evaluated():
    """A row evaluated only under a table's own protocol: its reconstructions are in the per-model reconstruct
    jobs (there is no per-dataset fallback rule then), its scores and protocol evaluations in its groups."""
    def change(cfg):
        cfg["tables"]["no_postprocessing"]["rows"] = [{"model": "vae3d"}]
        del cfg["tables"]["volumes"]

    s = study(change)
    assert [f for f in s.recon_files() if "/vae3d/" in f] == [
        f"results/recon/healthy_t2/vae3d/default/fold-{f}/tumour_t2.npz" for f in (0, 1)]
    pid = "erode~0__median~0__min_component~0"
    jobs = s.evaluate_groups()[("healthy_t2", "vae3d", "default")]
    # fold 0 under the default protocol too: the viewer maps (target all_maps, every table) read that threshold
    assert [(j["fold"], j["protocol"]) for j in jobs] == [(0, "default"), (0, pid), (1, pid)]
    assert [j["output"] for j in s.score_groups()[("healthy_t2", "vae3d", "default")]] == [
        f"results/scores/healthy_t2/vae3d/default/fold-{f}/tumour_t2/l1.npz" for f in (0, 1)]


# ---------------------------------------------------------------- paths


def test_path_patterns_filled():
    assert paths.RECON == "results/recon/{trainset}/{model}/{run}/fold-{fold}/{dataset}.npz"
    assert paths.fill(paths.RECON, trainset="ixi", model="ae", run=RUN, fold=2, dataset="brats") == \
        "results/recon/ixi/ae/default/fold-2/brats.npz"
    assert paths.fill(paths.NIFTI, kind="seg") == "results/data/{dataset}/nifti/{subject}_seg.nii.gz"
    assert paths.fill(paths.VOLUMES, dataset="{trainset}") == "results/data/{trainset}/volumes.npz"
    assert paths.fill(paths.TABLE, table="main", ext="tex") == "results/tables/main.tex"
    assert paths.eval_dir("ixi", "ae", RUN, 0, "brats", "l1") == "results/eval/ixi/ae/default/fold-0/brats/l1"
    lookup = paths.eval_dir_lookup(SMOKE["datasets"])
    assert lookup("ae", RUN, 1, "ms_t2", "ssim") == "results/eval/healthy_t2/ae/default/fold-1/ms_t2/ssim"


def test_data_and_report_inputs():
    s = study()
    assert s.data_files() == [f"results/data/{ds}/volumes.npz" for ds in ("healthy_t2", "tumour_t2", "ms_t2")] + [
        f"results/qc/{ds}/qc.tsv" for ds in ("healthy_t2", "tumour_t2", "ms_t2")]
    report = s.report_inputs()
    assert list(report) == ["tables", "figures", "sweeps", "qc_tables", "qc_exclusions", "qc_figures", "inference",
                            "captions", "claims", "published", "lesionwise", "healthy_fpr", "heldout"]
    assert {Path(c).name for c in report["captions"]} >= {"table.rst", "qualitative.rst"}  # a caption edit reruns it
    assert report["tables"] == [f"results/tables/{t}.tsv" for t in ("segmentation", "reconstruction", "diffusion",
                                                                     "detection", "no_postprocessing", "volumes", "sadm")]
    assert report["lesionwise"] == ["results/tables/lesionwise_detection.tsv"]
    assert report["healthy_fpr"] == ["results/tables/healthy_fpr_detection.tsv"]
    assert report["heldout"] == ["results/splits/tumour_t2.json"]  # the SADM Stage II training subjects page
    assert report["inference"] == ["results/tables/inference_time.tsv"]
    assert report["qc_exclusions"][0] == "results/qc/healthy_t2/exclusions.tsv"


# ---------------------------------------------------------------- schema errors in one line


def test_schema_error_names_the_unknown_key_and_the_keys_allowed_at_its_level():
    from brainuad.study import schema_error

    cfg = copy.deepcopy(SMOKE)
    assert schema_error(cfg, SCHEMA) is None
    cfg["preprocess"]["spacing"] = 3
    allowed = sorted(yaml.safe_load(SCHEMA.read_text())["properties"]["preprocess"]["properties"])
    assert str(schema_error(cfg, SCHEMA)) == (
        f"config error: preprocess.spacing: unknown key; allowed in preprocess: {', '.join(allowed)}")
    assert "\n" not in str(schema_error(cfg, SCHEMA))


def test_schema_error_names_the_path_of_a_wrong_value():
    from brainuad.study import schema_error

    cfg = copy.deepcopy(SMOKE)
    cfg["evaluation"]["median"] = "five"
    assert str(schema_error(cfg, SCHEMA)) == "config error: evaluation.median: 'five' is not of type 'integer'"
    cfg = copy.deepcopy(SMOKE)
    cfg["bogus"] = 1
    msg = str(schema_error(cfg, SCHEMA))
    assert msg.startswith("config error: bogus: unknown key; allowed in the top level: ") and "datasets, device," in msg


# ---------------------------------------------------------------- statistics, published numbers, claims


def test_claims_plan_only_testable_claims():
    s = study()
    assert s.claims_missing() == {"ens_helps": [], "faster": [], "sadm": ["model sadm_res"]}
    inputs = s.claims_inputs()
    assert "results/eval/healthy_t2/anoddpm_ens/default/fold-1/tumour_t2/l1/metrics.tsv" in inputs
    assert "results/recon/healthy_t2/cddpm_ssl/default/fold-0/tumour_t2.npz" in inputs
    assert not any("sadm" in f for f in inputs)
    assert s.report_inputs()["claims"] == [paths.CLAIMS]


def test_stats_settings_layer_table_over_run():
    s = study(lambda c: (c.update(stats={"paired": True}), c["tables"]["diffusion"].update(stats={"mark": "underline"})))
    assert s.stats_settings()["paired"] is True and s.stats_settings()["mark"] == "star"
    assert s.stats_settings("diffusion")["mark"] == "underline" and s.stats_settings("diffusion")["paired"] is True
    assert s.table_stats_files()[0] == "results/stats/segmentation.tsv"


def test_published_mapping_is_checked():
    def bad_row(c):
        c["tables"]["diffusion"]["published"] = {"table": "thesis_tab4_4", "rows": {"cDDPM": "cDDPM [22]"}}
    assert "published.rows: 'cDDPM' is not a row label" in config_error(bad_row)

    def bad_file(c):
        c["tables"]["diffusion"]["published"] = {"table": "tab9_9"}
    assert "tab9_9.tsv does not exist (known: " in config_error(bad_file)

    def good(c):
        c["tables"]["diffusion"]["published"] = {"table": "thesis_tab4_4", "rows": {"anoddpm": "AnoDDPM [116]"},
                                                 "datasets": {"tumour_t2": "BRATS (T2)"}}
    assert study(good).published_files() == [str(ROOT / "config" / "published" / "thesis_tab4_4.tsv")]


def test_duplicate_claim_ids_are_an_error():
    assert "claims: duplicate id(s) sadm" in config_error(lambda c: c["claims"].append(copy.deepcopy(c["claims"][2])))


def test_performance_switches_reach_train_and_reconstruct_params():
    from brainuad.training import TrainSettings

    plain = study()
    model = next(iter(plain.models))
    base_train, base_recon = plain.train_settings(model, "default", 0), plain.reconstruct_settings(model, "default")
    assert not {"channels_last", "compile", "log_every", "memory_mb"} & (set(base_train) | set(base_recon))

    def perf(cfg):
        cfg["performance"] = {"train_amp": "always", "reconstruct_amp": True, "channels_last": True,
                              "compile": "max-autotune", "data_on_device": False, "log_every": 7, "memory_mb": 512}

    s = study(perf)
    train, recon = s.train_settings(model, "default", 0), s.reconstruct_settings(model, "default")
    assert {k: train[k] for k in ("amp", "channels_last", "compile", "data_on_device", "log_every")} == {
        "amp": "always", "channels_last": True, "compile": "max-autotune", "data_on_device": False, "log_every": 7}
    assert {k: recon[k] for k in ("amp", "channels_last", "compile", "memory_mb")} == {
        "amp": True, "channels_last": True, "compile": "max-autotune", "memory_mb": 512}
    assert TrainSettings(**train).log_every == 7  # the train job builds its settings from these params
    assert "log_every" not in recon and "memory_mb" not in train

    def model_override(cfg):
        perf(cfg)
        cfg["models"][model].setdefault("train", {})["amp"] = False

    assert study(model_override).train_settings(model, "default", 0)["amp"] is False
    with pytest.raises(Exception, match="bogus"):
        study(lambda cfg: cfg.update(performance={"bogus": 1}))


# ---------------------------------------------------------------- evaluation protocols, lesion-wise and FPR pages


def test_table_and_row_protocols_plan_their_own_evaluation_folders():
    def change(cfg):
        cfg["tables"]["no_postprocessing"]["rows"] = [
            {"model": "ae"}, {"model": "ae", "label": "MF back", "protocol": {"median": 3}},  # 3 = evaluation.median
            {"model": "ae", "label": "greedy 4", "protocol": {"median": 3, "erode": 1, "min_component": 3,
                                                              "threshold": {"steps": 4}}}]

    s = study(change)
    ids = [row["protocol"] for row in s.table_rows["no_postprocessing"]]
    assert ids == ["erode~0__median~0__min_component~0", "erode~0__min_component~0", "threshold.steps~4"]
    assert s.protocol_ids == sorted(ids)
    files = s.table_metric_files("no_postprocessing")
    assert files[0] == ("results/eval/healthy_t2/ae/default/fold-0/tumour_t2/l1/protocol-erode~0__median~0__"
                        "min_component~0/metrics.tsv")
    opts = s.evaluation_options("threshold.steps~4")
    assert opts["threshold"]["steps"] == 4 and opts["median"] == 3 and s.evaluation_options()["threshold"]["steps"] == 10
    assert s.table_spec("no_postprocessing")["rows"][2]["protocol"] == "threshold.steps~4"
    # the healthy thresholds a pathology FPR evaluation reads: same model, fold, scoring and protocol
    assert s.healthy_threshold("healthy_t2", "ae", RUN, 0, "l1", "threshold.steps~4") == (
        "results/eval/healthy_t2/ae/default/fold-0/healthy_t2/l1/protocol-threshold.steps~4/threshold.json")


def test_protocol_equal_to_the_evaluation_section_reuses_the_plain_evaluation():
    def change(cfg):
        cfg["tables"]["no_postprocessing"]["protocol"] = {"median": 3, "threshold": {"protocol": "greedy"}}

    s = study(change)
    assert s.table_rows["no_postprocessing"][0]["protocol"] == "default" and s.protocol_ids == []
    assert "protocol-" not in " ".join(s.table_metric_files("no_postprocessing"))


def test_detection_pages_plan_fpr_files_and_check_their_tables():
    s = study()
    assert s.fpr_files("detection") == [f"results/eval/healthy_t2/ae/default/fold-{f}/tumour_t2/l1/fpr.tsv"
                                         for f in (0, 1)]
    assert "results/figures/lesionwise_detection.png" in s.report_figures()
    assert set(s.detection_files()) == {"results/tables/lesionwise_detection.tsv", "results/tables/lesionwise_detection.md",
                                        "results/figures/lesionwise_detection.png",
                                        "results/tables/healthy_fpr_detection.tsv", "results/tables/healthy_fpr_detection.md"}

    def bad(cfg):
        cfg["report"]["healthy_fpr"] = ["reconstruction"]

    assert "report.healthy_fpr: 'reconstruction' is not a segmentation table" in config_error(bad)


# ---------------------------------------------------------------- synthetic-anomaly datasets
def _with_synthetic(cfg, **spec):
    cfg["datasets"]["draem_t2"] = {"synthetic": {"from": "healthy_t2", **spec}, "role": "pathology", "val": 1}


def test_synthetic_dataset_is_planned_from_its_healthy_source():
    s = study(lambda cfg: _with_synthetic(cfg, kind="draem", options={"gamma_range": [0.2, 1.0]}))
    ds = s.datasets["draem_t2"]
    assert ds["trainset"] == "healthy_t2" and ds["sequence"] == "t2"
    assert s.synthetic_datasets == ["draem_t2"] and "draem_t2" not in s.source_datasets
    assert s.source_of("draem_t2") == {"kind": "synthetic"}
    assert s.split_manifest("draem_t2") == "results/data/healthy_t2/manifest.tsv"
    assert s.split_manifest("tumour_t2") == "results/data/tumour_t2/manifest.tsv"
    assert s.synthetic_settings("draem_t2") == {"kind": "draem", "seed": s.config["seed"], "mode": "volume",
                                                "options": {"gamma_range": [0.2, 1.0]}}
    assert s.preprocess_options("draem_t2") == s.preprocess_options("healthy_t2")
    files = s.data_files()
    assert "results/data/draem_t2/volumes.npz" in files and "results/qc/draem_t2/qc.tsv" not in files
    assert not any("draem_t2" in f for f in s.report_inputs()["qc_tables"])


@pytest.mark.parametrize("change, message", [
    (lambda cfg: _with_synthetic(cfg) or cfg["datasets"]["draem_t2"].update(synthetic={"from": "tumour_t2"}),
     "datasets.draem_t2.synthetic.from must name a healthy dataset read from a source, got 'tumour_t2'"),
    (lambda cfg: _with_synthetic(cfg) or cfg["datasets"]["draem_t2"].update(role="healthy"),
     "datasets.draem_t2: a synthetic dataset is evaluated like a pathology set; set role: pathology"),
    (lambda cfg: _with_synthetic(cfg, kind="fpi", options={"gamma_range": [0.2, 1.0]}),
     "datasets.draem_t2.synthetic.options: gamma_range not used by kind 'fpi' (it takes alpha_range, size_range)"),
    (lambda cfg: _with_synthetic(cfg) or cfg["datasets"]["draem_t2"].update(source="phantom"),
     "datasets.draem_t2: a synthetic dataset has no source (it is built from healthy_t2)"),
])


def test_synthetic_dataset_errors(change, message):
    assert config_error(change) == f"config error: {message}"


# ---------------------------------------------------------------- SADM Stage II


def test_stage2_model_consumes_the_stage1_checkpoint_and_its_training_data():
    s = study()
    assert s.stage2_models() == ["sadm_tumour"] and not s.is_stage2("cddpm_ssl")
    assert s.stage2_inputs("healthy_t2", "sadm_tumour", RUN, 1) == {
        "stage1": "results/models/healthy_t2/cddpm_ssl/default/fold-1/model.pt",
        "volumes": "results/data/tumour_t2/volumes.npz", "splits": "results/splits/tumour_t2.json"}
    assert s.stage2_data("sadm_tumour") == {"kind": "labels", "dataset": "tumour_t2"}
    params = s.stage1_params("sadm_tumour")
    assert params["arch"] == "cddpm" and params["hparams"] == s.model_hparams("cddpm_ssl", RUN)

    def synthetic(cfg):
        cfg["models"]["sadm_tumour"]["stage2"] = {"stage1": "anoddpm_ens", "data": "synthetic"}

    s2 = study(synthetic)
    assert s2.stage2_inputs("healthy_t2", "sadm_tumour", RUN, 0) == {
        "stage1": "results/models/healthy_t2/anoddpm/default/fold-0/model.pt",
        "volumes": "results/data/healthy_t2/volumes.npz", "splits": "results/splits/healthy_t2.json"}
    assert s2.stage1_params("sadm_tumour")["noise_level"] == [250, 750]  # the ENS of the weights_from model


@pytest.mark.parametrize("change, message", [
    (lambda c: c["models"]["sadm_tumour"]["stage2"].update(stage1="nope"), "stage2.stage1: 'nope' must name"),
    (lambda c: c["models"]["sadm_tumour"]["stage2"].update(stage1="thresh"), "must name a trained Stage I"),
    (lambda c: c["models"]["sadm_tumour"]["stage2"].update(data="ms_t2"), "pathology dataset with stage2_train"),
    (lambda c: c["models"]["sadm_tumour"].pop("stage2"), "arch sadm needs a stage2 section"),
    (lambda c: c["models"]["ae"].update(stage2={"stage1": "cddpm_ssl", "data": "synthetic"}), "needs arch sadm"),
])


def test_stage2_cross_checks(change, message):
    assert message in config_error(change)


# ---------------------------------------------------------------- feature backbones (issue 14)
SSL_BACKBONE = {"kind": "ssl", "channels": [4, 8, 8], "blocks": [1, 1, 1]}


def _with_feature_models(cfg, weights="/nonexistent/r18.pth"):
    cfg["models"]["fae"] = {"arch": "fae", "hparams": {"backbone": dict(SSL_BACKBONE), "hidden_dims": [4]},
                            "pretrain": {"max_steps": 2, "batch_size": 4, "lr": 0.001},
                            "train": {"max_steps": 2, "batch_size": 4, "lr": 0.001}}
    cfg["models"]["rd"] = {"arch": "rd", "pretrain_from": "fae", "hparams": {"backbone": dict(SSL_BACKBONE)},
                           "train": {"max_steps": 2, "batch_size": 4, "lr": 0.001}}
    cfg["models"]["edc"] = {"arch": "edc", "label": "EDC",
                            "hparams": {"backbone": {"kind": "imagenet", "arch": "resnet50", "weights": weights}},
                            "train": {"max_steps": 2, "batch_size": 4, "lr": 0.001}}
    cfg["tables"]["segmentation"]["rows"] += [{"model": m, "scoring": "native"} for m in ("fae", "rd", "edc")]


def test_pretrain_from_shares_one_encoder_and_unconfigured_models_get_no_jobs():
    s = study(_with_feature_models)
    key = dict(trainset="healthy_t2", run=RUN, fold=0)
    assert s.encoder_file(model="rd", **key) == s.encoder_file(model="fae", **key) == \
        paths.fill(paths.ENCODER, model="fae", **key)
    assert s.unconfigured == ["edc"]
    planned = s.table_metric_files("segmentation")
    assert any("/rd/" in f for f in planned) and not any("/edc/" in f for f in planned)
    assert not any("/edc/" in f for f in s.all_model_files())


def test_an_imagenet_backbone_with_its_file_is_configured(tmp_path):
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"")
    s = study(lambda cfg: _with_feature_models(cfg, str(weights)))
    assert s.unconfigured == []
    assert any("/edc/" in f for f in s.all_model_files())


@pytest.mark.parametrize("change,message", [
    (lambda m: m["rd"].update(pretrain_from="ae"), "'ae' must name a model with a pretrain section"),
    (lambda m: m["rd"]["hparams"]["backbone"].update(channels=[4, 8, 16]), "same channels"),
    (lambda m: m["rd"].update(pretrain={"max_steps": 1, "batch_size": 1, "lr": 0.1}), "not both"),
])


def test_pretrain_from_is_checked(change, message):
    def edit(cfg):
        _with_feature_models(cfg)
        change(cfg["models"])

    assert message in config_error(edit)


def test_pretrain_from_a_cddpm_reuses_its_ssl_encoder():
    def edit(cfg):
        _with_feature_models(cfg)
        cfg["models"]["rd"]["pretrain_from"] = "cddpm_ssl"
        cfg["models"]["rd"]["hparams"]["backbone"] = {"kind": "ssl", "channels": [4, 8], "blocks": [1, 1],
                                                      "context_dim": 8}

    s = study(edit)
    key = dict(trainset="healthy_t2", run=RUN, fold=1)
    assert s.encoder_file(model="rd", **key) == paths.fill(paths.ENCODER, model="cddpm_ssl", **key)

    def mismatch(cfg):
        edit(cfg)
        cfg["models"]["rd"]["hparams"]["backbone"].pop("context_dim")  # 128 != the cDDPM's 8

    assert "([4, 8], [1, 1], 'batch', 8)" in config_error(mismatch)


def test_ssl_encoder_signature_defaults_match_the_classes():
    import inspect

    from brainuad.catalog import ssl_encoder_signature
    from brainuad.models.diffusion.cddpm import ContextEncoderConfig
    from brainuad.models.encoder import ResNetEncoder

    cfg = ContextEncoderConfig()
    assert ssl_encoder_signature({"arch": "cddpm"}) == (list(cfg.encoder_channels), list(cfg.encoder_blocks),
                                                        cfg.encoder_norm, cfg.context_dim)
    sig = inspect.signature(ResNetEncoder).parameters
    assert ssl_encoder_signature({"hparams": {"backbone": {"kind": "ssl"}}}) == (
        list(sig["channels"].default), list(sig["blocks"].default), sig["norm"].default, sig["context_dim"].default)


def test_lesion_strata_need_an_unbounded_stratum():
    def bad(cfg):
        cfg["evaluation"]["lesions"] = {"strata": {"small": 10, "medium": 100}}

    assert "evaluation.lesions.strata: lesion strata: the largest stratum needs the bound null" in config_error(bad)


def test_a_sweep_protocol_reaches_its_evaluation_files():
    def change(cfg):
        cfg["sweeps"]["latent"]["protocol"] = {"median": 0}
        cfg["scoring_sweeps"]["mhd_n"]["protocol"] = {"median": 0}

    s = study(change)
    assert s.sweep_protocols["latent"] == s.sweep_protocols["mhd_n"] == "median~0"
    for sweep in ("latent", "mhd_n"):
        files = s.sweep_inputs(sweep)
        assert files and all("/protocol-median~0/" in f for f in files)
    assert "median~0" in s.protocol_ids


def test_preprocess_groups_plan_every_phantom_subject_and_no_real_one():
    """jobs.preprocess: per_dataset -- the smoke cohorts (healthy 6, tumour 4, ms 3) as the phantom generator names
    them, each subject's NIfTI and QC paths as the per-subject rule writes them; a real-data dataset gets no group
    (its subjects are known only after its manifest job)."""
    def change(cfg):
        cfg["jobs"] = {"preprocess": "per_dataset"}
        cfg["sources"]["ixi"] = {"kind": "ixi", "root": "/data/IXI"}
        cfg["datasets"]["ixi_t2"] = {"source": "ixi", "cohort": "all", "sequence": "t2", "role": "healthy"}

    s = study(change)
    assert s.preprocess_jobs() == "per_dataset" and study().preprocess_jobs() == "per_subject"
    groups = s.preprocess_groups()
    assert sorted(groups) == ["healthy_t2", "ms_t2", "tumour_t2"]
    assert list(groups["ms_t2"]) == ["ms-001", "ms-002", "ms-003"] and len(groups["healthy_t2"]) == 6
    assert groups["tumour_t2"]["tumour-004"] == {
        "image": "results/data/tumour_t2/nifti/tumour-004_image.nii.gz",
        "mask": "results/data/tumour_t2/nifti/tumour-004_mask.nii.gz",
        "seg": "results/data/tumour_t2/nifti/tumour-004_seg.nii.gz",
        "ignore": "results/data/tumour_t2/nifti/tumour-004_ignore.nii.gz",
        "qc": "results/data/tumour_t2/nifti/tumour-004_qc.json"}
    from brainuad.data.phantom import subject_id

    assert subject_id("ms", 3) == "ms-003"  # the generator's ids are the planned ones
    assert Study.group_rule("preprocess", "tumour_t2") == "preprocess__tumour_t2"

import json
from pathlib import Path

import numpy as np
import pandas as pd

from brainuad.paths import eval_dir
from brainuad.reporting.sweeps import (
    collect_sweep,
    in_display_units,
    metric_axis_labels,
    sweep_metrics,
    write_sweep,
)

MODELS = {"ae": {"label": "AE"}, "vae": {}}
DATASETS = {"h": {"role": "healthy"}, "t": {"role": "pathology", "trainset": "h", "label": "T"}}


def _eval(model, run, scoring, dice_per_fold):
    """Fold f gets two test subjects with Dice dice_per_fold[f] ± 0.1 (mean dice_per_fold[f])."""
    for fold, d in enumerate(dice_per_fold):
        folder = Path(eval_dir("h", model, run, fold, "t", scoring))
        folder.mkdir(parents=True)
        pd.DataFrame({"subject": ["a", "b"], "split": ["test", "test"], "dice_oracle": [d - 0.1, d + 0.1]}).to_csv(
            folder / "metrics.tsv", sep="\t", index=False)
        (folder / "threshold.json").write_text(json.dumps({"pooled": {}}))


def test_sweep_metrics_default():
    assert sweep_metrics({}) == ["dice_oracle"]
    assert sweep_metrics({"metric": "auprc"}) == ["auprc"]
    assert sweep_metrics({"metrics": ["dice", "l1"], "metric": "auprc"}) == ["dice", "l1"]


def test_scoring_sweep_table_and_reference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _eval("ae", "default", "s1", [0.2, 0.4])  # fold means 0.2, 0.4 -> 0.3 ± 0.1414
    _eval("ae", "default", "s2", [0.5, 0.5])
    _eval("ae", "default", "ens", [0.6, 0.8])
    sweep = {"model": "ae", "scoring": "ssim", "param": "sigma", "values": [0.5, 1.0], "datasets": ["t"],
             "reference": "ens"}
    kw = dict(ids=["s1", "s2"], points=[], folds=[0, 1], models=MODELS, datasets=DATASETS, run="default")
    long, reference, param, label = collect_sweep("scoring", sweep, **kw)
    assert param == "ssim: sigma" and label == "ens"
    np.testing.assert_allclose(long["mean"], [0.3, 0.5])
    np.testing.assert_allclose(long["std"], [np.sqrt(0.02), 0.0], atol=1e-12)
    assert long["value"].tolist() == [0.5, 1.0] and long["series"].tolist() == ["T", "T"]
    np.testing.assert_allclose(reference["mean"], [0.7])
    table = write_sweep(tmp_path / "f.png", tmp_path / "t.tsv", "scoring", sweep, **kw)
    assert table["value"].tolist() == [0.5, 1.0, "reference:ens"] and (tmp_path / "f.png").stat().st_size > 0
    written = pd.read_csv(tmp_path / "t.tsv", sep="\t")
    assert written["scoring"].tolist() == ["s1", "s2", "ens"]


def test_model_sweep_series_per_model_and_default_scoring(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for model in MODELS:
        _eval(model, "r1", "l1", [0.1, 0.3])
        _eval(model, "r2", "l1", [0.2, 0.2])
    sweep = {"models": ["ae", "vae"], "set": {"t_test": "reconstruct.t"}, "datasets": ["t"], "table": "x.tsv"}
    long, reference, param, label = collect_sweep(
        "model", sweep, ids=[], points=[{"run": "r1", "value": 100}, {"run": "r2", "value": 200}], folds=[0, 1],
        models=MODELS, datasets=DATASETS, run="default")
    assert reference is None and param == "t_test" and label == "configured model"
    assert long["series"].tolist() == ["AE · T", "AE · T", "vae · T", "vae · T"]
    assert long["value"].tolist() == [100, 200, 100, 200]
    np.testing.assert_allclose(long["mean"], [0.2, 0.2, 0.2, 0.2])


def test_display_units_and_axis_labels():
    long = pd.DataFrame({"metric": ["dice", "psnr"], "mean": [0.25, 30.0], "std": [0.01, 1.0], "value": ["1", "2"]})
    shown = in_display_units(long, ["dice", "psnr"])
    assert shown["mean"].tolist() == [25.0, 30.0] and shown["std"].tolist() == [1.0, 1.0]
    assert shown["value"].tolist() == [1.0, 2.0] and long["mean"].tolist() == [0.25, 30.0]
    assert metric_axis_labels(["dice", "psnr"]) == {"dice": "DICE (%)", "psnr": "PSNR (dB)"}

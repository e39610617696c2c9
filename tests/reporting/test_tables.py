import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from brainuad.reporting.tables import aggregate, format_cell, to_latex, wide


def _write(folder, rows, pooled=None):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "metrics.tsv", sep="\t", index=False)
    (folder / "threshold.json").write_text(json.dumps({"threshold": 0.3, "pooled": pooled or {}}))


def test_aggregate_mean_std_across_folds_of_test_subject_means(tmp_path):
    # fold 0: test dice 0.2, 0.4 (mean 0.3), a val subject (ignored) and a NaN subject (ignored)
    _write(tmp_path / "ae/0", [{"subject": "a", "split": "test", "dice": 0.2}, {"subject": "b", "split": "test", "dice": 0.4},
                                {"subject": "c", "split": "val", "dice": 0.9}, {"subject": "d", "split": "test", "dice": math.nan}],
           pooled={"auprc_pooled": 0.5})
    _write(tmp_path / "ae/1", [{"subject": "a", "split": "test", "dice": 0.5}], pooled={"auprc_pooled": 0.7})
    spec = {"rows": [{"model": "ae", "scoring": "l1"}], "datasets": ["t"], "metrics": ["dice", "auprc_pooled"]}
    long = aggregate(spec, lambda m, r, f, d, s: tmp_path / m / str(f), [0, 1], {"ae": {"label": "AE"}}, {"t": {"label": "T"}})
    dice = long[long.metric == "dice"].iloc[0]
    assert dice["mean"] == 0.4 and np.isclose(dice["std"], np.std([0.3, 0.5], ddof=1)) and dice["n_folds"] == 2
    pooled = long[long.metric == "auprc_pooled"].iloc[0]
    assert np.isclose(pooled["mean"], 0.6)
    assert wide(long).loc["AE", "T · DICE"] == "40.00 ± 14.14"


def test_format_and_bold_best_respects_direction():
    long = pd.DataFrame([
        {"row": "A", "dataset_label": "D", "metric": "l1", "mean": 0.010, "std": 0.001, "n_folds": 2},
        {"row": "B", "dataset_label": "D", "metric": "l1", "mean": 0.020, "std": 0.001, "n_folds": 2},
        {"row": "A", "dataset_label": "D", "metric": "ssim", "mean": 0.80, "std": 0.0, "n_folds": 1},
        {"row": "B", "dataset_label": "D", "metric": "ssim", "mean": 0.90, "std": 0.0, "n_folds": 1},
    ])
    table = wide(long)
    assert table.loc["A", "D · l1 (e-3)"] == "**10.00 ± 1.00**"  # lower l1 is better
    assert table.loc["B", "D · SSIM"] == "**90.00**"
    tex = to_latex(table, "t")
    assert r"\textbf{10.00 $\pm$ 1.00}" in tex and tex.count(r"\\") >= 3
    assert format_cell(math.nan, math.nan, 0, "dice") == "n/a"


def test_schema_metric_enums_follow_the_metric_table():
    """Adding a metric is one entry of reporting.tables.METRICS plus the schema enums; this keeps them in step."""
    import yaml

    from brainuad.reporting.tables import METRICS

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow" / "schemas" /
                             "config.schema.yaml").read_text())
    props = schema["properties"]
    table_metrics = props["tables"]["additionalProperties"]["properties"]["metrics"]["items"]["enum"]
    assert sorted(table_metrics) == sorted(METRICS)
    scoring_sweep = props["scoring_sweeps"]["additionalProperties"]["properties"]["metric"]["enum"]
    model_sweep = props["sweeps"]["additionalProperties"]["properties"]["metrics"]["items"]["enum"]
    assert scoring_sweep == model_sweep and set(model_sweep) <= set(METRICS)
    # sweeps plot segmentation metrics: every pooled metric, and the per-volume Dice/AUPRC ones
    assert set(model_sweep) == {"dice_oracle", "dice", "auprc"} | {m for m in METRICS if m.endswith("_pooled")}


def test_subject_spread_is_the_std_over_all_test_subjects(tmp_path):
    """P8.1's DICE_S mu ± sigma: std over subjects (pooled over folds); pooled metrics keep the fold spread."""
    _write(tmp_path / "v/0", [{"subject": "a", "split": "test", "dice": 0.2}, {"subject": "b", "split": "test", "dice": 0.4},
                               {"subject": "c", "split": "val", "dice": 0.9}, {"subject": "d", "split": "test", "dice": math.nan}],
           pooled={"dice_pooled": 0.35})
    spec = {"rows": [{"model": "v"}], "datasets": ["t"], "metrics": ["dice", "dice_pooled"], "spread": "subjects"}
    long = aggregate(spec, lambda m, r, f, d, s: tmp_path / m / str(f), [0], {"v": {}}, {"t": {}})
    dice = long[long.metric == "dice"].iloc[0]
    assert np.isclose(dice["mean"], 0.3) and np.isclose(dice["std"], np.std([0.2, 0.4], ddof=1))
    assert dice["n_folds"] == 1 and dice["n_spread"] == 2
    table = wide(long)
    assert table.loc["v", "t · DICE"] == "30.00 ± 14.14"
    assert table.loc["v", "t · DICE pooled"] == "35.00"  # one fold: a single number, as P8.1's DICE_D
    import pytest

    with pytest.raises(ValueError, match="spread must be"):
        aggregate({**spec, "spread": "x"}, lambda *a: tmp_path / "v/0", [0], {"v": {}}, {"t": {}})


def test_rows_without_configured_backbone_say_not_configured(tmp_path):
    from brainuad.reporting.tables import backbone_note, configured_rows

    _write(tmp_path / "ae/0", [{"subject": "a", "split": "test", "dice": 0.2}])
    weights = tmp_path / "r18.pth"
    weights.write_bytes(b"x")  # exists: configured (its contents are checked only when a job loads it)
    models = {"ae": {"label": "AE"},
              "fae": {"label": "FAE", "hparams": {"backbone": {"kind": "imagenet", "arch": "resnet18",
                                                               "weights": str(tmp_path / "missing.pth")}}},
              "rd": {"label": "RD", "hparams": {"backbone": {"kind": "imagenet", "arch": "wide_resnet50_2",
                                                             "weights": str(weights)}}},
              "edc": {"label": "EDC", "hparams": {"backbone": {"kind": "ssl", "channels": [8, 16]}}}}
    spec = {"rows": [{"model": "ae"}, {"model": "fae"}], "datasets": ["t"], "metrics": ["dice"]}

    def eval_dir(m, r, f, d, s):
        assert m != "fae", "an unconfigured row must not read results"
        return tmp_path / m / str(f)

    long = aggregate(spec, eval_dir, [0], models, {"t": {"label": "T"}})
    table = wide(long)
    assert table.loc["FAE", "T · DICE"] == "not configured"
    assert table.loc["AE", "T · DICE"] == "20.00"
    assert backbone_note(long) == " Backbones: FAE = ImageNet resnet18 (missing.pth) - not configured."
    assert [r["model"] for r in configured_rows({**spec, "rows": spec["rows"] + [{"model": "rd"}, {"model": "edc"}]},
                                                 models)["rows"]] == ["ae", "rd", "edc"]

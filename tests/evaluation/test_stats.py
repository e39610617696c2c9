"""brainuad.evaluation.stats against hand-enumerated and independently computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from brainuad.evaluation import stats
from brainuad.reporting.tables import METRICS, POOLED

ENGINES = ["mlxtend", "numpy"]


@pytest.mark.parametrize("engine", ENGINES)
def test_unpaired_matches_exact_enumeration(engine):
    # x = {3, 4, 5}, y = {1, 2}: the 10 ways to pick 3 of the 5 values have sums 6, 7, 8, 8, 9, 10, 9, 10, 11, 12;
    # only the observed split (sum 12, mean difference 4 - 1.5 = 2.5) is >= 2.5, so the exact p-value is 1/10
    p = stats.permutation_pvalue([3, 4, 5], [1, 2], rounds=10000, seed=1, engine=engine)
    assert abs(p - 0.1) < 0.015  # 5 standard errors of a 10,000-round estimate


@pytest.mark.parametrize("engine", ENGINES)
def test_paired_matches_exact_enumeration(engine):
    # differences 4, 3, 1: of the 8 sign flips only (+, +, +) reaches the observed sum 8 -> p = 1/8;
    # two-sided: (+, +, +) and (-, -, -) -> 2/8
    x, y = [5, 6, 7], [1, 3, 6]
    p = stats.permutation_pvalue(x, y, paired=True, rounds=10000, seed=2, engine=engine)
    assert abs(p - 0.125) < 0.017
    p2 = stats.permutation_pvalue(x, y, paired=True, alternative="two-sided", rounds=10000, seed=2, engine=engine)
    assert abs(p2 - 0.25) < 0.022


def _loop_pvalue(x, y, rounds, seed):
    """Independent implementation: a plain loop over permutations with numpy's Generator."""
    rng = np.random.default_rng(seed)
    combined = np.concatenate([x, y])
    ref = x.mean() - y.mean()
    hits = 0
    for _ in range(rounds):
        perm = rng.permutation(combined)
        if perm[: x.size].mean() - perm[x.size:].mean() >= ref - 1e-12:
            hits += 1
    return (hits + 1) / (rounds + 1)


@pytest.mark.parametrize("engine", ENGINES)
def test_unpaired_matches_independent_implementation(engine):
    rng = np.random.default_rng(0)
    x, y = rng.normal(0.55, 0.2, 40), rng.normal(0.5, 0.2, 35)
    x = x + 0.04  # observed difference 0.015: p about 0.37
    ref = _loop_pvalue(x, y, 10000, 5)
    assert 0.01 < ref < 0.5  # a case where the p-value is neither 0 nor 1
    p = stats.permutation_pvalue(x, y, rounds=10000, seed=3, engine=engine)
    se = math.sqrt(ref * (1 - ref) / 10000)
    assert abs(p - ref) < 5 * math.sqrt(2) * se


def test_numpy_engine_reproduces_mlxtend_paired_exactly():
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, 25)
    y = x - 0.2 + rng.normal(0, 0.8, 25)
    for alt in ("greater", "two-sided"):
        a = stats.permutation_pvalue(x, y, paired=True, alternative=alt, rounds=3000, seed=9, engine="mlxtend")
        b = stats.permutation_pvalue(x, y, paired=True, alternative=alt, rounds=3000, seed=9, engine="numpy")
        assert a == b


@pytest.mark.parametrize("engine", ENGINES)
def test_paired_and_unpaired_disagree_where_subjects_vary(engine):
    # every subject is 1 point better under x, but subjects differ by 10 points: only the paired test sees it
    y = np.arange(10.0, 90.0, 10.0)
    x = y + 1.0 + np.linspace(0, 0.1, y.size)
    unpaired = stats.permutation_pvalue(x, y, rounds=10000, seed=0, engine=engine)
    paired = stats.permutation_pvalue(x, y, paired=True, rounds=10000, seed=0, engine=engine)
    assert unpaired > 0.3
    assert abs(paired - 1 / 256) < 0.004  # all 8 differences positive: exact p = 1 / 2^8


def test_holm_textbook_example():
    # Holm (1979) as on Wikipedia's "Holm-Bonferroni method": p = 0.01, 0.04, 0.03, 0.005 for H1..H4.
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005 = 0.02, 3*0.01 = 0.03, 2*0.03 = 0.06, max(0.04, 0.06) = 0.06:
    # H4 and H1 are rejected at 0.05, H3 and H2 are not.
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    assert list(adj <= 0.05) == [True, False, False, True]
    np.testing.assert_allclose(stats.holm([0.2, math.nan, 0.01]), [0.2, math.nan, 0.02])


def test_bootstrap_ci_width_and_degenerate_cases():
    v = np.random.default_rng(0).normal(5.0, 1.0, 400)
    lo, hi = stats.bootstrap_ci(v, resamples=2000, seed=0)
    assert lo < v.mean() < hi
    assert abs((hi - lo) - 2 * 1.96 / 20) < 0.04  # normal theory: 2 * 1.96 * sd / sqrt(n)
    assert stats.bootstrap_ci([0.3]) == (0.3, 0.3)
    assert all(math.isnan(b) for b in stats.bootstrap_ci([]))


def test_settings_reject_unknown_values():
    assert stats.settings({"paired": True}, {"unit": "fold"})["unit"] == "fold"
    with pytest.raises(ValueError, match="stats.unit"):
        stats.settings({"unit": "voxel"})
    with pytest.raises(ValueError, match="unknown setting"):
        stats.settings({"rounds_": 3})


def _fake_load(values):
    """load() over {model: (n_folds, n_subjects) array} of dice values; 'auprc_pooled' = fold mean."""
    def load(model, run, fold, dataset, scoring):
        v = values[model][fold]
        df = pd.DataFrame({"subject": [f"s{i}" for i in range(v.size)], "split": "test", "dice": v, "l1": 1 - v})
        return df, {"auprc_pooled": float(v.mean())}
    return load


def test_table_stats_marks_a_clear_winner_only():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, (2, 30))
    values = {"a": base + 0.2, "b": base, "c": base + 0.01 * rng.normal(size=base.shape)}
    spec = {"rows": [{"model": "a"}, {"model": "b"}, {"model": "c"}], "datasets": ["d"], "metrics": ["dice", "l1"]}
    models = {m: {"label": m.upper()} for m in values}
    s = stats.settings({"paired": True, "engine": "numpy", "rounds": 2000})
    out = stats.table_stats(spec, _fake_load(values), [0, 1], models, {"d": {}}, s, METRICS, POOLED)
    dice = out[out["metric"] == "dice"].set_index("row")
    assert dice.loc["A", "best"] and dice.loc["A", "star"]
    assert dice.loc["B", "p_vs_best"] < 0.01 and math.isnan(dice.loc["A", "p_vs_best"])
    assert dice.loc["A", "unit"] == "subject" and dice.loc["A", "n_units"] == 30
    assert dice.loc["A", "ci_low"] < dice.loc["A", "unit_mean"] < dice.loc["A", "ci_high"]
    l1 = out[out["metric"] == "l1"].set_index("row")  # lower is better: A has the smallest l1
    assert l1.loc["A", "best"] and l1.loc["A", "star"]
    # B and C tie within noise: with A removed, the winner is not significantly better than the other
    spec2 = {**spec, "rows": spec["rows"][1:], "metrics": ["dice"]}
    out2 = stats.table_stats(spec2, _fake_load(values), [0, 1], models, {"d": {}}, s, METRICS, POOLED)
    assert not out2["star"].any()


def test_table_stats_pooled_metric_uses_folds():
    values = {"a": np.array([[0.5, 0.6], [0.55, 0.65]]), "b": np.array([[0.1, 0.2], [0.15, 0.2]])}
    spec = {"rows": [{"model": "a"}, {"model": "b"}], "datasets": ["d"], "metrics": ["auprc_pooled"]}
    s = stats.settings({"engine": "numpy", "rounds": 500})
    out = stats.table_stats(spec, _fake_load(values), [0, 1], {"a": {}, "b": {}}, {"d": {}}, s, METRICS, POOLED)
    assert set(out["unit"]) == {"fold"} and set(out["n_units"]) == {2}
    # two folds against two folds: the best possible unpaired p-value is 1/C(4,2) = 1/6, never significant
    assert not out["star"].any()


def test_schema_choices_equal_the_library():
    import yaml
    from pathlib import Path

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow" / "schemas" /
                             "config.schema.yaml").read_text())
    props = schema["$defs"]["stats"]["properties"]
    assert set(props) == set(stats.DEFAULTS)
    for key, allowed in (("unit", stats.UNITS), ("alternative", stats.ALTERNATIVES),
                         ("correction", stats.CORRECTIONS), ("engine", stats.ENGINES), ("mark", stats.MARKS)):
        assert props[key]["enum"] == list(allowed), key

"""brainuad.evaluation.claims: verdicts of re-tested thesis claims."""

import numpy as np
import pandas as pd

from brainuad.evaluation import claims as cl
from brainuad.evaluation import stats
from brainuad.reporting.tables import METRICS, POOLED

MODELS = {"vae": {"label": "VAE"}, "cddpm": {"label": "cDDPM"}, "pddpm": {"label": "pDDPM"}}
SCORINGS = {"l1": {}, "ssim": {}}
DATASETS = {"brats": {}}


def _load(means):
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.02, (2, 40))

    def load(model, run, fold, dataset, scoring):
        v = means[(model, scoring)] + noise[fold]
        return pd.DataFrame({"subject": [f"s{i}" for i in range(40)], "split": "test", "dice_oracle": v}), {}
    return load


def _run(claims, means, times=None):
    missing = {c["id"]: cl.missing(c, MODELS, SCORINGS, DATASETS) for c in claims}
    s = stats.settings({"paired": True, "engine": "numpy", "rounds": 2000})
    return cl.evaluate_claims(claims, missing_by_claim=missing, load=_load(means),
                              load_time=lambda m, r, f, d: times[m][f], folds=[0, 1], models=MODELS, settings=s,
                              metrics=METRICS, pooled_metrics=POOLED)


def test_claim_with_missing_model_is_not_testable():
    claim = {"id": "sadm", "text": "SADM_res > cDDPM", "better": [{"model": "sadm_res"}], "worse": [{"model": "cddpm"}],
             "datasets": ["brats"], "metric": "dice_oracle"}
    out = _run([claim], {})
    assert len(out) == 1
    assert out["verdict"].iloc[0] == "not testable here (missing: model sadm_res)"
    assert cl.summary(out)["verdict"].iloc[0].startswith("not testable here")
    claim2 = {**claim, "better": [{"model": "cddpm", "scoring": "ssim_ens"}], "datasets": ["brats", "atlas"]}
    assert cl.missing(claim2, MODELS, SCORINGS, DATASETS) == ["scoring ssim_ens", "dataset atlas"]


def test_reproduced_and_not_reproduced_claims():
    means = {("cddpm", "l1"): 0.60, ("pddpm", "l1"): 0.55, ("vae", "l1"): 0.30}
    good = {"id": "ddpm", "text": "DDPMs > VAE", "better": [{"model": "cddpm"}, {"model": "pddpm"}],
            "worse": [{"model": "vae"}], "datasets": ["brats"], "metric": "dice_oracle", "expected": "+20"}
    bad = {"id": "rev", "text": "VAE > pDDPM", "better": [{"model": "vae"}], "worse": [{"model": "pddpm"}],
           "datasets": ["brats"], "metric": "dice_oracle"}
    out = _run([good, bad], means)
    g = out[out["claim"] == "ddpm"]
    assert len(g) == 2 and set(g["verdict"]) == {"reproduced"}
    assert np.allclose(sorted(g["effect"]), [25.0, 30.0])  # display units (%): 0.55 - 0.30, 0.60 - 0.30
    assert (g["p"] < 0.01).all() and set(g["unit"]) == {"subject"}
    assert set(out[out["claim"] == "rev"]["verdict"]) == {"not reproduced"}
    shown = cl.summary(out).set_index("claim")
    assert shown.loc["DDPMs > VAE", "measured"] == "+25.00 .. +30.00 (thesis: +20)"


def test_time_claim_reports_relative_change():
    claim = {"id": "t", "text": "cDDPM faster", "kind": "time", "better": [{"model": "cddpm"}],
             "worse": [{"model": "pddpm"}], "datasets": ["brats"]}
    out = _run([claim], {}, times={"cddpm": [0.63, 0.63], "pddpm": [1.0, 1.0]})
    assert out["effect"].iloc[0] == -37.0 or abs(out["effect"].iloc[0] + 37.0) < 1e-9
    # two jobs per model: the smallest possible paired p-value is 1/4 -> not significant, not reproduced
    assert out["verdict"].iloc[0] == "not reproduced"

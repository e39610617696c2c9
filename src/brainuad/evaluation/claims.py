"""The thesis' claims re-tested on a run: each claim is a set of one-sided comparisons "row A better than row B"
on given datasets and one metric (or the seconds per volume of the reconstruct jobs), with a verdict.

A claim (config ``claims``) names ``better`` and ``worse`` rows (``model``, optional ``scoring``/``run``),
``datasets`` and ``metric``; every (better, worse, dataset) triple is one permutation test
(:mod:`brainuad.evaluation.stats`). Verdicts: ``reproduced`` (every comparison significant in the claimed
direction, after Holm across the claim's comparisons when ``correction: holm``), ``not reproduced``, or
``not testable here (missing: ...)`` when the config lacks a model, scoring or dataset the claim needs -- so
the page grows as models land.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from . import stats as st

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable here"


def claim_rows(claim: dict, default_run: str = "default") -> tuple[list[dict], list[dict]]:
    """``better`` and ``worse`` rows of a claim with ``scoring`` (l1) and ``run`` filled in."""
    from brainuad.reporting.tables import table_row

    return ([table_row(r, default_run) for r in claim["better"]], [table_row(r, default_run) for r in claim["worse"]])


def missing(claim: dict, models: dict, scorings: dict, datasets: dict, run_ids=("default",)) -> list[str]:
    """What the config lacks for ``claim``: ``model X``, ``scoring Y``, ``dataset Z``, ``run R`` (empty: testable)."""
    out = []
    better, worse = claim_rows(claim)
    for row in better + worse:
        if row["model"] not in models:
            out.append(f"model {row['model']}")
        elif claim.get("kind", "metric") == "metric" and row["scoring"] not in scorings:
            out.append(f"scoring {row['scoring']}")
        elif row["run"] not in run_ids:
            out.append(f"run {row['run']}")
    out += [f"dataset {ds}" for ds in claim.get("datasets", []) if ds not in datasets]
    if not claim.get("datasets"):
        out.append("datasets (none given)")
    if claim.get("kind", "metric") == "metric" and not claim.get("metric"):
        out.append("metric (none given)")
    return list(dict.fromkeys(out))


def comparisons(claim: dict) -> list[tuple[dict, dict, str]]:
    """(better row, worse row, dataset) of every test of a claim."""
    better, worse = claim_rows(claim)
    return [(b, w, ds) for ds in claim["datasets"] for b in better for w in worse]


def evaluate_claims(claims: list[dict], *, missing_by_claim: dict, load: Callable | None, load_time: Callable | None,
                    folds, models: dict, settings: dict, metrics: dict, pooled_metrics=()) -> pd.DataFrame:
    """Test every claim; one line per comparison (one line for an untestable claim).

    Parameters
    ----------
    claims : the config's ``claims``
    missing_by_claim : {claim id: :func:`missing` list}
    load : ``load(model, run, fold, dataset, scoring) -> (metrics rows, pooled dict)`` (metric claims)
    load_time : ``load_time(model, run, fold, dataset) -> seconds per volume`` (time claims)
    folds : list of int
    models : the config's models (labels)
    settings : :func:`brainuad.evaluation.stats.settings` of the run; a claim's ``stats`` overrides it
    metrics : ``{name: (label, scale, higher_is_better)}``

    Returns
    -------
    DataFrame: ``claim, text, source, kind, better, worse, dataset, metric, unit, n_better, n_worse, mean_better,
    mean_worse, effect, effect_text, p, p_adjusted, verdict, expected, test``
    """
    from brainuad.reporting.tables import row_label

    lines = []
    for claim in claims:
        s = st.settings(settings, claim.get("stats"))
        kind = claim.get("kind", "metric")
        base = {"claim": claim["id"], "text": claim["text"], "source": claim.get("source", ""), "kind": kind,
                "expected": claim.get("expected", ""), "test": st.describe(s)}
        lacking = missing_by_claim.get(claim["id"], [])
        if lacking:
            lines.append({**base, "verdict": f"{NOT_TESTABLE} (missing: {', '.join(lacking)})"})
            continue
        metric = claim.get("metric", "seconds_per_volume") if kind == "metric" else "seconds_per_volume"
        label, scale, higher = metrics.get(metric, (metric, 1.0, True)) if kind == "metric" else ("s / volume", 1.0,
                                                                                                    False)
        part = []
        for b, w, ds in comparisons(claim):
            if kind == "metric":
                cb = st.cell_samples([load(b["model"], b["run"], f, ds, b["scoring"]) for f in folds], metric,
                                     pooled_metrics)
                cw = st.cell_samples([load(w["model"], w["run"], f, ds, w["scoring"]) for f in folds], metric,
                                     pooled_metrics)
                (unit, xb), (unit_w, xw) = st.unit_of(cb, s["unit"]), st.unit_of(cw, s["unit"])
                if unit != unit_w:  # one row has only fold values: compare fold means
                    unit, xb, xw = "fold", cb["fold"], cw["fold"]
            else:
                unit = "fold"
                xb = pd.Series({f: load_time(b["model"], b["run"], f, ds) for f in folds}, dtype=float)
                xw = pd.Series({f: load_time(w["model"], w["run"], f, ds) for f in folds}, dtype=float)
            res = st.compare(xb, xw, s, higher_is_better=higher)
            mb, mw = float(xb.mean()), float(xw.mean())
            if kind == "time":
                effect = 100.0 * (mb / mw - 1.0) if mw else math.nan
                text = f"{effect:+.0f} % time"
            else:
                effect = res["effect"] * scale
                text = f"{effect:+.2f} {label}"
            part.append({**base, "better": row_label(b, models), "worse": row_label(w, models), "dataset": ds,
                         "metric": metric, "unit": unit, "n_better": res["n_a"], "n_worse": res["n_b"],
                         "mean_better": mb * scale, "mean_worse": mw * scale, "effect": effect, "effect_text": text,
                         "p": res["p"]})
        p = np.array([line["p"] for line in part], dtype=float)
        adj = st.holm(p) if s["correction"] == "holm" else p
        ok = bool(len(adj)) and bool(np.all(np.isfinite(adj))) and bool(np.all(adj < s["alpha"]))
        for line, a in zip(part, adj):
            lines.append({**line, "p_adjusted": float(a), "verdict": REPRODUCED if ok else NOT_REPRODUCED})
    cols = ["claim", "text", "source", "kind", "better", "worse", "dataset", "metric", "unit", "n_better", "n_worse",
            "mean_better", "mean_worse", "effect", "effect_text", "p", "p_adjusted", "verdict", "expected", "test"]
    return pd.DataFrame(lines).reindex(columns=cols)


def summary(long: pd.DataFrame) -> pd.DataFrame:
    """One display line per claim: claim text, test, measured effect (range over comparisons), largest
    (adjusted) p-value and verdict."""
    out = []
    for cid, part in long.groupby("claim", sort=False):
        first = part.iloc[0]
        if str(first["verdict"]).startswith(NOT_TESTABLE):
            out.append({"claim": first["text"], "source": first["source"], "test": "-", "measured": "-", "p": "-",
                        "verdict": first["verdict"]})
            continue
        effects = pd.to_numeric(part["effect"], errors="coerce")
        unit = "% time" if first["kind"] == "time" else ""
        measured = (f"{effects.iloc[0]:+.2f}" if len(part) == 1 else f"{effects.min():+.2f} .. {effects.max():+.2f}")
        measured += f" {unit}".rstrip() + (f" (thesis: {first['expected']})" if str(first["expected"]) not in ("", "nan")
                                           else "")
        pairs = sorted({f"{b} > {w}" for b, w in zip(part["better"], part["worse"])})
        test = f"{'; '.join(pairs)} on {', '.join(dict.fromkeys(part['dataset']))} ({first['metric']})"
        out.append({"claim": first["text"], "source": first["source"], "test": test, "measured": measured,
                    "p": f"{pd.to_numeric(part['p_adjusted'], errors='coerce').max():.3g}",
                    "verdict": first["verdict"]})
    return pd.DataFrame(out)

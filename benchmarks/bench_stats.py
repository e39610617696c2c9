"""How long the statistics of the thesis' largest table take (rule ``table_stats``), against building the table.

The thesis matrix's largest table in config/thesis.yaml (most rows x datasets x metrics) is synthesised with the
real test-set sizes (method-spec §1.1: BraTS21 1251, MSLUB 30, ATLAS v2 655, WMH 60 subjects, minus the
validation fraction each dataset sets in thesis.yaml; 5 folds): per-subject metrics.tsv + threshold.json files
in a scratch folder, one per row x dataset x fold, every row with its own mean. Then, in one run:

* ``aggregate``: the ``table`` rule's work (mean ± std over folds from the same files);
* ``table_stats`` with 10,000 rounds, best row against every other row in every column, once per engine
  (``mlxtend``: the thesis' library, the default; ``numpy``: the same test vectorised) and test setting;
* the same for a 20-row version of the table;
* every pair of the 20 rows (190 tests) in the largest column, the cost of a full pairwise matrix.

Prints seconds and the ratio statistics / table aggregation. Use:
python benchmarks/bench_stats.py [--configfile config/thesis.yaml] [--engines mlxtend,numpy] [--rounds 10000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from brainuad.evaluation import stats
from brainuad.reporting.tables import METRICS, POOLED, aggregate

ROOT = Path(__file__).resolve().parents[1]
#: subjects per thesis data set (method-spec §1.1), keyed by the data set name prefix in thesis.yaml
THESIS_COUNTS = {"ixi": 562, "brats": 1251, "mslub": 30, "atlas": 655, "wmh": 60}


def test_subjects(name: str, ds: dict) -> int:
    n = next(v for k, v in THESIS_COUNTS.items() if name.startswith(k))
    val = ds.get("val", 0)
    return int(round(n * (1 - val))) if isinstance(val, float) and val < 1 else n - int(val)


def synthesise(folder: Path, spec: dict, datasets: dict, folds: int, rng) -> dict:
    """metrics.tsv + threshold.json per (row, dataset, fold) under ``folder``; returns {row index: model key}."""
    for i, _ in enumerate(spec["rows"]):
        for ds in spec["datasets"]:
            n = test_subjects(ds, datasets[ds])
            base = rng.beta(2, 5, n)  # subject difficulty, shared by every row and fold
            for f in range(folds):
                d = folder / f"r{i}" / ds / str(f)
                d.mkdir(parents=True, exist_ok=True)
                cols = {"subject": [f"s{k:05d}" for k in range(n)], "split": "test"}
                for metric in spec["metrics"]:
                    cols[metric] = np.clip(base + 0.01 * i + rng.normal(0, 0.05, n), 0, 1)
                pd.DataFrame(cols).to_csv(d / "metrics.tsv", sep="\t", index=False)
                (d / "threshold.json").write_text(json.dumps({"pooled": {}}))
    return {i: f"r{i}" for i in range(len(spec["rows"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default=str(ROOT / "config" / "thesis.yaml"))
    ap.add_argument("--engines", default="mlxtend,numpy")
    ap.add_argument("--rounds", type=int, default=10000)
    ap.add_argument("--thesis-size-only", action="store_true", help="skip the 20-row table (MLxtend takes minutes)")
    args = ap.parse_args()
    cfg = yaml.safe_load(Path(args.configfile).read_text())
    datasets, folds = cfg["datasets"], cfg["splits"]["folds"]
    name, spec = max(cfg["tables"].items(),
                     key=lambda kv: len(kv[1]["rows"]) * len(kv[1]["datasets"]) * len(kv[1]["metrics"]))
    spec = {**spec, "metrics": [m for m in spec["metrics"] if m not in POOLED]}
    sizes = {ds: test_subjects(ds, datasets[ds]) for ds in spec["datasets"]}
    rng = np.random.default_rng(0)
    print(f"largest table: {name}: {len(spec['rows'])} rows x {len(spec['datasets'])} datasets x "
          f"{len(spec['metrics'])} metrics, {folds} folds, test subjects {sizes}")
    with tempfile.TemporaryDirectory() as tmp:
        for n_rows in (len(spec["rows"]),) if args.thesis_size_only else (len(spec["rows"]), 20):
            rows = [{"model": f"r{i}", "label": f"row {i}"} for i in range(n_rows)]
            table = {**spec, "rows": rows}
            folder = Path(tmp) / f"rows{n_rows}"
            synthesise(folder, table, datasets, folds, rng)
            models = {f"r{i}": {} for i in range(n_rows)}

            def eval_dir(model, run, fold, dataset, scoring, folder=folder):
                return folder / model / dataset / str(fold)

            def load(model, run, fold, dataset, scoring, folder=folder):
                d = folder / model / dataset / str(fold)
                return stats.read_fold(d / "metrics.tsv", d / "threshold.json")

            t0 = time.perf_counter()
            aggregate(table, eval_dir, list(range(folds)), models, datasets)
            t_table = time.perf_counter() - t0
            n_tests = (n_rows - 1) * len(table["datasets"]) * len(table["metrics"])
            print(f"\n{n_rows} rows: table aggregation {t_table:.2f} s; {n_tests} tests of {args.rounds} rounds")
            for engine in args.engines.split(","):
                for paired in (False, True):
                    if engine == "mlxtend" and paired:
                        continue  # mlxtend's paired test loops over subjects in Python: minutes per test here
                    s = stats.settings({"engine": engine, "paired": paired, "rounds": args.rounds})
                    t0 = time.perf_counter()
                    stats.table_stats(table, load, list(range(folds)), models, datasets, s, METRICS, POOLED)
                    t = time.perf_counter() - t0
                    print(f"  table_stats engine={engine:<7} paired={paired!s:<5}: {t:7.1f} s  "
                          f"({t / n_tests:.3f} s/test, {t / t_table:.1f} x table aggregation)")
            if n_rows == 20:
                ds = max(table["datasets"], key=sizes.get)
                metric = table["metrics"][0]
                samples = [stats.cell_samples([load(f"r{i}", "default", f, ds, "l1") for f in range(folds)],
                                              metric)["subject"] for i in range(n_rows)]
                s = stats.settings({"engine": "numpy", "rounds": args.rounds})
                t0 = time.perf_counter()
                for a, b in itertools.combinations(range(n_rows), 2):
                    stats.compare(samples[a], samples[b], s)
                t = time.perf_counter() - t0
                print(f"  every pair of 20 rows (190 tests, numpy) on {ds} ({sizes[ds]} subjects): {t:.1f} s")


if __name__ == "__main__":
    main()

"""Compare two ``results/`` folders of the same config: are the tables and the arrays behind them identical?

A refactoring must not change a number. Run the same config with two checkouts (e.g. the smoke config,
``snakemake all_tables --configfile tests/smoke/config.yaml --directory A``, once per checkout) and compare:

    python benchmarks/compare_results.py A/results B/results

Checked: every file under ``tables/`` byte for byte (the inference-time table and the ``seconds`` columns it
is made of are measured wall times: compared for their shape only); the QC tables without their timing and
tool-version columns, and the training logs without their ``seconds`` column; every ``.npz`` under ``data/``,
``recon/``, ``scores/`` and ``analysis/`` array by array (exact equality; timing arrays skipped); every
``metrics.tsv``, ``threshold.json``, manifest and ``splits/*.json`` byte for byte. Prints one line per
differing file and a summary; exit status 1 when anything differs or a file exists on one side only. Absolute
paths of the two working folders (manifests hold raw file paths) are replaced by ``<workdir>`` first.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: measured wall-clock times: they differ between any two runs
TIMED_TABLES = {"inference_time.tsv", "inference_time.md", "inference_time.tex"}
TIMED_KEYS = ("seconds", "time")
BYTE_PATTERNS = ("tables/*", "eval/**/metrics.tsv", "eval/**/threshold.json", "models/**/train_log.tsv",
                 "models/**/pretrain_log.tsv", "splits/*.json", "data/*/manifest.tsv", "qc/*/*.tsv")
ARRAY_PATTERNS = ("data/*/volumes.npz", "recon/**/*.npz", "scores/**/*.npz", "analysis/**/*.npz")


def differences(a: Path, b: Path) -> tuple[list[str], int]:
    """Relative paths that differ between results folders ``a`` and ``b`` (with the reason), and files compared."""
    problems, compared = [], 0
    for patterns, compare in ((BYTE_PATTERNS, _same_text), (ARRAY_PATTERNS, _same_arrays)):
        files = {p.relative_to(a) for pat in patterns for p in a.glob(pat) if p.is_file()}
        files |= {p.relative_to(b) for pat in patterns for p in b.glob(pat) if p.is_file()}
        for rel in sorted(files):
            if not (a / rel).is_file() or not (b / rel).is_file():
                problems.append(f"{rel}: only in {'b' if (b / rel).is_file() else 'a'}")
                continue
            compared += 1
            why = compare(a / rel, b / rel, a.resolve().parent, b.resolve().parent)
            if why:
                problems.append(f"{rel}: {why}")
    return problems, compared


def _same_text(x: Path, y: Path, root_x: Path, root_y: Path) -> str | None:
    tx = x.read_text().replace(str(root_x), "<workdir>")
    ty = y.read_text().replace(str(root_y), "<workdir>")
    if x.name in TIMED_TABLES:  # measured wall times: the same rows and header is all that can hold
        lx, ly = tx.splitlines(), ty.splitlines()
        return None if (len(lx), lx[:1]) == (len(ly), ly[:1]) else "different shape"
    if x.name == "qc.tsv" or x.name.endswith("_log.tsv"):  # training logs carry a ``seconds`` column
        fx, fy = (pd.read_csv(io.StringIO(s), sep="\t", dtype=str, keep_default_na=False) for s in (tx, ty))
        untimed = [c for c in fx.columns if not any(w in c for w in (*TIMED_KEYS, "version"))]
        if list(fx.columns) != list(fy.columns):
            return "different columns"
        return None if fx[untimed].equals(fy[untimed]) else "values differ"
    return None if tx == ty else "bytes differ"


def _same_arrays(x: Path, y: Path, *_roots: Path) -> str | None:
    with np.load(x, allow_pickle=False) as zx, np.load(y, allow_pickle=False) as zy:
        if set(zx.files) != set(zy.files):
            return f"keys {sorted(zx.files)} vs {sorted(zy.files)}"
        for key in zx.files:
            if any(word in key for word in TIMED_KEYS):
                continue
            ax, ay = zx[key], zy[key]
            if ax.shape != ay.shape or ax.dtype != ay.dtype or not np.array_equal(ax, ay, equal_nan=ax.dtype.kind == "f"):
                return f"array {key!r} differs"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    problems, compared = differences(args.a, args.b)
    for line in problems:
        print(line)
    print(f"{compared} files compared, {len(problems)} differ or exist on one side only")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()

"""Start-up vs work per Snakemake rule, from a finished run's benchmark files (plain script).

Every Snakemake ``script:`` job is a fresh Python process: the interpreter, Snakemake's preamble
(unpickling the ``snakemake`` object) and the imports of the rule's script are paid again by every job
before any work starts. This script

1. measures that start-up cost per rule script in this run: a probe process that runs only the
   preamble imports and the script's top-level ``import`` statements (taken from its AST), run once
   untimed (bytecode caches, as after a run's first jobs; PYTHONDONTWRITEBYTECODE is dropped as the
   Makefile does) and then timed ``--repeat`` times (median wall seconds), plus one ``python -X importtime`` run of the same probe
   whose self times are summed per top-level package (torch, monai, scipy, ...);
2. reads the benchmark files of a results folder (``results/benchmarks/<rule>/**.tsv``, Snakemake's
   ``s`` column = wall seconds of the job) and prints per rule: jobs, job seconds, start-up per job,
   start-up seconds (jobs x start-up), work seconds (the rest) and the start-up share; and the overall
   start-up share of the run's job time (goal: < 10 %);
3. with ``--baseline-tree`` (another checkout with its own ``.venv``) measures that tree's probes in the
   same run, alternating with this tree's, and prints the import-time ratio per script; with
   ``--baseline-results`` also the baseline run's breakdown and the job-time ratio per rule.

On a shared machine absolute seconds are inflated; the ratios from one run are what to compare.

Usage::

    python benchmarks/bench_startup.py [results] [--tree .] [--baseline-tree DIR] [--baseline-results DIR]
                                       [--repeat 3] [--top 4] [--startup-only]
"""

from __future__ import annotations

import argparse
import ast
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# What Snakemake's generated preamble imports before the script (snakemake/script/__init__.py,
# PythonScript.generate_preamble); unpickling the snakemake object needs snakemake.io as well.
PREAMBLE = "import pickle\nfrom snakemake.logging import logger\nfrom snakemake.iocontainers import Snakemake\n"

RULE_RE = re.compile(r"^\s*rule\s+(\w+)\s*:", re.M)  # indented: rules inside an if (jobs.reconstruct)
SCRIPT_RE = re.compile(r"^\s+script:\s*\n?\s*[\"']([^\"']+)[\"']", re.M)


def rule_scripts(workflow: Path) -> dict[str, Path]:
    """Map every rule of ``workflow/rules/*.smk`` (and ``workflow/Snakefile``) to its ``script:`` file.

    Parameters
    ----------
    workflow : Path
        The ``workflow`` folder of a checkout.

    Returns
    -------
    dict
        rule name -> absolute path of the script (rules without ``script:`` are left out).
    """
    out = {}
    for smk in sorted(workflow.glob("rules/*.smk")):
        text = smk.read_text()
        starts = [(m.start(), m.group(1)) for m in RULE_RE.finditer(text)] + [(len(text), None)]
        for (begin, name), (end, _) in zip(starts, starts[1:]):
            found = SCRIPT_RE.search(text, begin, end)
            if found:
                out[name] = (smk.parent / found.group(1)).resolve()
    return out


def script_imports(script: Path) -> str:
    """The top-level ``import`` / ``from ... import`` statements of a script, as source text."""
    source = script.read_text()
    tree = ast.parse(source, filename=str(script))
    lines = [ast.get_source_segment(source, node) for node in tree.body
             if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines) + "\n"


def read_benchmarks(results: Path) -> dict[str, list[float]]:
    """Wall seconds (column ``s``) of every job, per rule, from ``<results>/benchmarks/<rule>/**/*.tsv``.

    Raises
    ------
    FileNotFoundError
        When the folder has no benchmark files.
    ValueError
        Naming the file, when a benchmark file has no ``s`` column or no row.
    """
    root = results / "benchmarks"
    files = sorted(root.glob("*/**/*.tsv"))
    if not files:
        raise FileNotFoundError(f"no Snakemake benchmark files below {root}")
    jobs: dict[str, list[float]] = defaultdict(list)
    for path in files:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows or "s" not in rows[0]:
            raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column or no row)")
        rule = path.relative_to(root).parts[0]
        jobs[rule].append(statistics.mean(float(row["s"]) for row in rows))  # mean of --benchmark-repeats
    return dict(jobs)


def package_self_times(importtime_stderr: str) -> dict[str, float]:
    """Seconds of ``python -X importtime`` self time summed per top-level package.

    Self times add up to the whole import time, so the sums attribute it without double counting.
    """
    out: dict[str, float] = defaultdict(float)
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        # "import time: <self us> | <cumulative us> | <indent><module>"
        self_us, _, name = line.split(":", 1)[1].split("|")
        name = name.strip()
        out[name.split(".")[0]] += int(self_us) / 1e6
    return dict(out)


def breakdown(jobs: dict[str, list[float]], startup: dict[str, float]) -> list[dict]:
    """Per-rule rows: jobs, job seconds, start-up per job and in total, work seconds and start-up share.

    Parameters
    ----------
    jobs : dict
        rule -> wall seconds of each job (:func:`read_benchmarks`).
    startup : dict
        rule -> start-up seconds per job; rules missing here get ``None`` (not counted as start-up).

    Returns
    -------
    list of dict
        One row per rule, sorted by job seconds (largest first), then a ``total`` row. The start-up
        of a rule is capped at its job seconds (a probe slower than a job cannot be more than the job).
    """
    rows = []
    for rule, seconds in jobs.items():
        total = sum(seconds)
        per_job = startup.get(rule)
        start = None if per_job is None else sum(min(per_job, s) for s in seconds)
        rows.append({"rule": rule, "jobs": len(seconds), "job_s": total, "startup_per_job_s": per_job,
                     "startup_s": start, "work_s": None if start is None else total - start,
                     "startup_share": None if start is None or total == 0 else start / total})
    rows.sort(key=lambda r: -r["job_s"])
    total = sum(r["job_s"] for r in rows)
    start = sum(r["startup_s"] or 0.0 for r in rows)
    rows.append({"rule": "total", "jobs": sum(r["jobs"] for r in rows), "job_s": total, "startup_per_job_s": None,
                 "startup_s": start, "work_s": total - start, "startup_share": start / total if total else None})
    return rows


def probe_source(script: Path) -> str:
    """The start-up probe of one rule script: Snakemake's preamble imports + the script's imports, ended as
    the script ends (:func:`brainuad.utils.exit_now` where the script calls it, else the interpreter's
    teardown, which the probe's wall time includes)."""
    end = "from brainuad.utils import exit_now\nexit_now()\n" if "exit_now()" in script.read_text() else ""
    return PREAMBLE + script_imports(script) + end


def job_env() -> dict:
    """The environment of a Snakemake job started by ``make demo``: the Makefile unexports
    PYTHONDONTWRITEBYTECODE, so jobs read cached bytecode instead of compiling every import."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_probe(python: str, probe: Path, cwd: Path) -> float:
    """Wall seconds of one fresh interpreter running the probe."""
    start = time.perf_counter()
    subprocess.run([python, str(probe)], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   env=job_env())
    return time.perf_counter() - start


def importtime(python: str, probe: Path, cwd: Path) -> dict[str, float]:
    """Per-package import seconds of the probe (one ``-X importtime`` run)."""
    run = subprocess.run([python, "-X", "importtime", str(probe)], cwd=cwd, check=True, capture_output=True,
                         text=True, env=job_env())
    return package_self_times(run.stderr)


def measure_trees(trees: dict[str, Path], rules: set[str], repeat: int, workdir: Path) -> dict:
    """Start-up seconds per rule script of each tree (median of ``repeat`` runs, trees alternating).

    Returns
    -------
    dict
        tree label -> rule -> {"median_s", "runs", "packages", "script"}.
    """
    python = {label: str(tree / ".venv" / "bin" / "python") for label, tree in trees.items()}
    for label, exe in python.items():
        if not Path(exe).exists():
            raise FileNotFoundError(f"{exe}: tree {label!r} has no .venv (run `make install` there)")
    scripts = {label: rule_scripts(tree / "workflow") for label, tree in trees.items()}
    probes: dict[str, dict[str, Path]] = defaultdict(dict)
    for label in trees:
        for rule in sorted(rules & scripts[label].keys()):
            probe = workdir / f"{label}-{rule}.py"
            probe.write_text(probe_source(scripts[label][rule]))
            probes[label][rule] = probe
    bare = {label: [] for label in trees}
    runs: dict[str, dict[str, list[float]]] = {label: defaultdict(list) for label in trees}
    for label, tree in trees.items():  # untimed: writes the bytecode caches a run's first jobs write
        for probe in probes[label].values():
            time_probe(python[label], probe, tree)
    for _ in range(repeat):
        for label, tree in trees.items():  # alternate trees so that load changes hit both alike
            empty = workdir / "empty.py"
            empty.write_text("")
            bare[label].append(time_probe(python[label], empty, tree))
            for rule, probe in probes[label].items():
                runs[label][rule].append(time_probe(python[label], probe, tree))
    out = {}
    for label, tree in trees.items():
        out[label] = {"(bare python)": {"median_s": statistics.median(bare[label]), "runs": bare[label],
                                        "packages": {}, "script": None}}
        for rule, probe in probes[label].items():
            out[label][rule] = {"median_s": statistics.median(runs[label][rule]), "runs": runs[label][rule],
                                "packages": importtime(python[label], probe, tree),
                                "script": scripts[label][rule].name}
    return out


def fmt(value, spec=".1f", width=8) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}{spec}}"


def print_startup(measured: dict, top: int) -> None:
    labels = list(measured)
    print(f"\n## Start-up per job (interpreter + Snakemake preamble + the script's imports), median seconds")
    header = f"{'rule':<20} {'script':<26}" + "".join(f" {label:>10}" for label in labels)
    if len(labels) == 2:
        header += f" {'ratio':>7}"
    print(header + f"   top packages ({labels[0]}, s)")
    rules = list(measured[labels[0]])
    for rule in rules + [r for r in measured[labels[-1]] if r not in rules]:
        cells = [measured[label].get(rule) for label in labels]
        line = f"{rule:<20} {str((cells[0] or cells[-1])['script'] or ''):<26}"
        line += "".join(f" {fmt(c and c['median_s'], '.2f', 10)}" for c in cells)
        if len(labels) == 2:
            ratio = cells[1]["median_s"] / cells[0]["median_s"] if all(cells) else None
            line += f" {fmt(ratio, '.2f', 6)}x"
        packages = sorted((cells[0] or {}).get("packages", {}).items(), key=lambda kv: -kv[1])[:top]
        print(line + "   " + ", ".join(f"{name} {s:.2f}" for name, s in packages))
    if len(labels) == 2:
        print(f"(ratio = {labels[1]} / {labels[0]}: how many times faster {labels[0]} starts)")


def print_breakdown(title: str, rows: list[dict]) -> None:
    print(f"\n## {title}")
    print(f"{'rule':<20} {'jobs':>5} {'job s':>9} {'start/job':>9} {'start-up s':>10} {'work s':>9} {'start %':>8}")
    for r in rows:
        share = None if r["startup_share"] is None else 100 * r["startup_share"]
        print(f"{r['rule']:<20} {r['jobs']:>5} {r['job_s']:9.1f} {fmt(r['startup_per_job_s'], '.2f', 9)} "
              f"{fmt(r['startup_s'], '.1f', 10)} {fmt(r['work_s'], '.1f', 9)} {fmt(share, '.1f', 7)}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=Path("results"),
                        help="results folder of a finished run (with benchmarks/)")
    parser.add_argument("--startup-only", action="store_true",
                        help="only the start-up table, for every rule script (no results needed)")
    parser.add_argument("--tree", type=Path, default=Path("."), help="checkout whose scripts ran (with .venv)")
    parser.add_argument("--baseline-tree", type=Path, help="another checkout to compare start-up with")
    parser.add_argument("--baseline-results", type=Path, help="results folder of the baseline run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per probe (median)")
    parser.add_argument("--top", type=int, default=4, help="packages listed per script")
    args = parser.parse_args()

    trees = {"this": args.tree.resolve()}
    if args.baseline_tree:
        trees["baseline"] = args.baseline_tree.resolve()
    if args.startup_only:
        jobs, base_jobs = {}, None
        rules = set().union(*(rule_scripts(tree / "workflow") for tree in trees.values()))
    else:
        jobs = read_benchmarks(args.results)
        base_jobs = read_benchmarks(args.baseline_results) if args.baseline_results else None
        rules = set(jobs) | set(base_jobs or {})
    print(f"# {os.uname().nodename}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"python {sys.version.split()[0]}; {args.repeat} timed runs per probe")
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        measured = measure_trees(trees, rules, args.repeat, Path(tmp))
    print_startup(measured, args.top)
    if args.startup_only:
        return

    def per_job(label):
        return {rule: m["median_s"] for rule, m in measured[label].items() if m["script"]}

    rows = breakdown(jobs, per_job("this"))
    print_breakdown(f"{args.results}: start-up (this tree's probes) vs work per rule", rows)
    summary = [("this", rows[-1])]
    if base_jobs is not None:
        base_rows = breakdown(base_jobs, per_job("baseline" if "baseline" in measured else "this"))
        print_breakdown(f"{args.baseline_results}: baseline run", base_rows)
        summary.append(("baseline", base_rows[-1]))
        base = {r["rule"]: r for r in base_rows}
        print("\n## Job seconds per rule, this run / baseline run")
        print(f"{'rule':<20} {'jobs':>11} {'job s':>19} {'ratio':>7} {'s/job ratio':>11}")
        for r in rows:
            b = base.get(r["rule"])
            if b is None:
                print(f"{r['rule']:<20} {r['jobs']:>5} {'-':>5} {r['job_s']:9.1f} {'-':>9}")
                continue
            ratio = r["job_s"] / b["job_s"] if b["job_s"] else None
            per = (r["job_s"] / r["jobs"]) / (b["job_s"] / b["jobs"]) if b["job_s"] and r["jobs"] else None
            print(f"{r['rule']:<20} {r['jobs']:>5} {b['jobs']:>5} {r['job_s']:9.1f} {b['job_s']:9.1f} "
                  f"{fmt(ratio, '.2f', 6)}x {fmt(per, '.2f', 10)}x")
    print()
    for label, total in summary:
        share = total["startup_share"]
        print(f"{label}: job time {total['job_s']:.0f} s in {total['jobs']} jobs, start-up {total['startup_s']:.0f} s "
              f"= {100 * share:.1f} % ({'meets' if share < 0.10 else 'misses'} the < 10 % goal)")


if __name__ == "__main__":
    main()

"""How long Snakemake needs to plan the whole thesis matrix, and how many jobs that is.

Two dry-runs of ``all_tables`` (plus ``all_sweeps``) with ``config/thesis.yaml`` in scratch folders:

1. from scratch: nothing exists, so the per-subject pre-processing jobs are still hidden behind the
   ``manifest`` checkpoints (the plan a user sees first);
2. after the manifests: fake raw folders and manifests with the thesis' subject counts (IXI 562,
   BraTS21 1251, MSLUB 30, ATLAS v2 655, WMH 60) are written, so the DAG holds one pre-processing job
   per subject. The raw "images" in those manifests are empty files: planning succeeds only because no
   NIfTI file is opened while the Snakefile is parsed (every SLURM job re-parses it).

A third dry-run adds the job groups of profiles/slurm/config.yaml (score + evaluate), which the cluster
run pays for. Goal (cluster-scale issue): each plan under 30 s on a 2-core development machine.
With ``--baseline DIR`` (another checkout, e.g. ``git worktree add /tmp/base main~1``) every dry-run is
repeated with that checkout's Snakefile right after this one's, and the ratio this / baseline is printed:
a refactoring must not make planning slower (ratios from one run on one machine, so noise hits both alike).
Use: python benchmarks/bench_planning.py [--configfile config/thesis.yaml] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from brainuad.utils import dry_run_job_counts

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
#: subjects per thesis data set (method-spec §1.1), keyed by the data set name prefix in thesis.yaml
THESIS_COUNTS = {"ixi": 562, "brats": 1251, "mslub": 30, "atlas": 655, "wmh": 60}


def dry_run(workdir: Path, configfile: Path, *extra: str, root: Path = ROOT) -> tuple[float, dict[str, int]]:
    """Seconds and job counts of one dry-run of ``root``'s Snakefile in ``workdir``."""
    cmd = [SNAKEMAKE, "-s", str(root / "Snakefile"), "--directory", str(workdir), "--configfile", str(configfile),
           "--replace-workflow-config", "-n", "all_tables", "all_sweeps", "--rerun-triggers", "mtime", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"dry-run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    counts = dry_run_job_counts(proc.stdout)
    return seconds, {**counts, "total": sum(counts.values())}


def fake_manifests(workdir: Path, config: dict) -> int:
    """Raw folders + manifests with thesis subject counts; the raw "images" are empty files.

    Synthetic datasets (a ``synthetic:`` block, rule synthesize) have no raw folder or manifest.
    """
    tables = {}
    for name, ds in config["datasets"].items():
        if "synthetic" in ds:
            continue
        n = THESIS_COUNTS.get(name.split("_")[0], 100)
        raw = workdir / "results" / "raw" / ds["source"] / ds["cohort"]
        raw.mkdir(parents=True, exist_ok=True)
        lines = ["subject\timage\tseg\tage\tsex\tsequence\tsha256"]
        for i in range(n):
            image = f"{raw}/s{i:04d}_{ds['sequence']}.nii.gz"
            seg = "" if ds["role"] == "healthy" else f"{raw}/s{i:04d}_seg.nii.gz"
            for path in (image, seg):
                if path:
                    Path(path).touch()  # empty: not a NIfTI file, so parse time must not open it
            lines.append(f"s{i:04d}\t{image}\t{seg}\t50\tF\t{ds['sequence']}\t0")
        tables[name] = lines
    for name, lines in tables.items():  # after every raw file, so no manifest is older than its input
        out = workdir / "results" / "data" / name / "manifest.tsv"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        (out.parent / "exclusions.tsv").write_text("source\tsubject\tfile\treason\n")  # the checkpoint's 2nd output
    return sum(len(lines) - 1 for lines in tables.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, default=ROOT / "config" / "thesis.yaml")
    parser.add_argument("--baseline", type=Path, help="another checkout to plan the same config with, for ratios")
    args = parser.parse_args()
    if args.baseline:
        compare(args.configfile.resolve(), args.baseline.resolve())
        return
    config = yaml.safe_load(args.configfile.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "fresh"
        fresh.mkdir()
        s1, c1 = dry_run(fresh, args.configfile)
        filled = Path(tmp) / "filled"
        filled.mkdir()
        subjects = fake_manifests(filled, config)
        s2, c2 = dry_run(filled, args.configfile)
        profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
        groups = profile.get("groups", [])
        s3, _ = dry_run(filled, args.configfile, *(["--groups", *groups] if groups else []))
    width = max(len(k) for k in {**c1, **c2})
    print(f"config: {args.configfile}")
    print(f"{'job':<{width}}  {'from scratch':>12}  {'manifests known':>15}")
    for job in sorted(set(c1) | set(c2), key=lambda j: (j == "total", j)):
        print(f"{job:<{width}}  {c1.get(job, 0):>12}  {c2.get(job, 0):>15}")
    print(f"planning time: {s1:.1f} s from scratch; {s2:.1f} s with {subjects} subjects in the manifests; "
          f"{s3:.1f} s with those and the SLURM profile's job groups ({' '.join(groups) or 'none'})")
    worst = max(s1, s2, s3)
    print(f"goal < 30 s: {'met' if worst < 30 else 'NOT met'} (slowest / goal = {worst / 30:.2f})")


def compare(configfile: Path, baseline: Path) -> None:
    """The three plans with this checkout and with ``baseline``, alternating, and the ratios this / baseline."""
    config = yaml.safe_load(configfile.read_text())
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    groups = profile.get("groups", [])
    plans = [("from scratch", False, ()), ("manifests known", True, ()),
             ("with job groups", True, tuple(["--groups", *groups] if groups else []))]
    print(f"config: {configfile}\nthis: {ROOT}\nbaseline: {baseline}")
    print(f"{'plan':<16} {'this s':>7} {'base s':>7} {'ratio':>6}  jobs (this / base)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, filled, extra in plans:
            times, jobs = {}, {}
            for label, root in (("this", ROOT), ("base", baseline)):
                workdir = Path(tmp) / f"{label}-{name.replace(' ', '-')}"
                workdir.mkdir()
                if filled:
                    fake_manifests(workdir, config)
                times[label], counts = dry_run(workdir, configfile, *extra, root=root)
                jobs[label] = counts["total"]
            print(f"{name:<16} {times['this']:>7.1f} {times['base']:>7.1f} {times['this'] / times['base']:>6.2f}"
                  f"  {jobs['this']} / {jobs['base']}")


if __name__ == "__main__":
    main()

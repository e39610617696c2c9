"""The smoke workflow through a real one-node SLURM with the SLURM profile.

tests/slurm/start_slurm.py starts munged, slurmctld and slurmd (SLURM 22.05 from Debian, installed with
apt-get when missing) with partitions `cpu` and `gpu` and one fake GPU; the smoke config
(tests/smoke/config.yaml) then runs with profiles/slurm/config.yaml + tests/slurm/site.yaml (the test
cluster's site settings: no conda, no account, squeue status, 1 CPU and little memory per job). Checked:
every job except the local target went through sbatch, the GPU rules of the profile asked for and got the
GPU partition and a GPU, all others the CPU partition and no GPU, score+evaluate ran as one SLURM job per
pair, the outputs exist, and a second run has nothing to do.
The daemons are stopped by pid and their state removed whatever happens.

Slow: 16-19 min on the 2-core development machine (122 SLURM jobs, each starting Snakemake twice: the
jobstep and its srun); runs only with `make test-slurm` / `pytest -m slurm` (conftest.py).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SMOKE = ROOT / "tests" / "smoke" / "config.yaml"
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = str(VENV_BIN / "snakemake")
RUN_TIMEOUT = 45 * 60

pytestmark = pytest.mark.slurm


def _load_cluster_module():
    spec = importlib.util.spec_from_file_location("brainuad_start_slurm", HERE / "start_slurm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


slurm = _load_cluster_module()


def merge_profile(base: dict, overlay: dict) -> dict:
    """Overlay a profile: mappings merge recursively, None deletes a key, anything else replaces."""
    out = dict(base)
    for key, value in overlay.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_profile(out[key], value)
        else:
            out[key] = value
    return out


def write_profile(target: Path) -> dict:
    profile = merge_profile(yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text()),
                            yaml.safe_load((HERE / "site.yaml").read_text()))
    target.mkdir(parents=True, exist_ok=True)
    (target / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile


def parse_scontrol(text: str) -> list[dict[str, str]]:
    """`scontrol -o show job` -> one dict per job (values without spaces are enough here)."""
    return [dict(re.findall(r"(\w[\w/:]*)=(\S*)", line)) for line in text.splitlines() if line.startswith("JobId=")]


@dataclass
class Submission:
    slurm_id: str
    kind: str      # "rule" or "group"
    name: str      # rule name, or the group job's name (e.g. evaluate_evaluate_score)
    sbatch: str    # the sbatch options (without --wrap)
    targets: list[str]  # rules of the Snakemake jobs it runs (--target-jobs of the wrapped command)
    log: Path      # .snakemake/slurm_logs/<kind>_<name>/[<wildcards>/]<id>.log
    record: dict[str, str]  # scontrol show job


@dataclass
class Run:
    workdir: Path
    log: str
    wall_s: float
    profile: dict
    submissions: list[Submission] = field(default_factory=list)
    rerun_dryrun: str = ""
    daemons: dict[str, int] = field(default_factory=dict)
    state: Path | None = None


def submissions(log: str, scontrol: str) -> list[Submission]:
    """Pair the controller's `sbatch call:` lines (--verbose) with its "submitted with SLURM jobid" lines
    (through the --output template) and with scontrol's job records."""
    calls: dict[str, list[tuple[str, list[str]]]] = {}
    for opts, wrap in re.findall(r"sbatch call: (sbatch .*?) --wrap=(.*)$", log, re.M):
        args = shlex.split(opts)  # paths with e.g. "~" (sweep run ids) come quoted
        targets = re.findall(r"'(\w+):[^']*'", re.search(r"--target-jobs (.*?) --allowed-rules", wrap).group(1))
        calls.setdefault(args[args.index("--output") + 1], []).append((opts, targets))
    records = {j["JobId"]: j for j in parse_scontrol(scontrol)}
    out = []
    for slurm_id, path in re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)", log):
        kind, name = re.search(r"slurm_logs/(rule|group)_([^/]+)/", path).groups()
        # group jobs share one --output template: take their calls in submission order
        opts, targets = calls[path[: -len(f"{slurm_id}.log")] + "%j.log"].pop(0)
        out.append(Submission(slurm_id, kind, name, opts, targets, Path(path), records.get(slurm_id, {})))
    return out


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> Run:
    reason = slurm.can_install()
    if reason:
        pytest.skip(f"cannot start a test SLURM: {reason}")
    try:
        slurm.install()
    except (slurm.SlurmError, subprocess.SubprocessError, OSError) as err:
        pytest.skip(f"cannot install SLURM with apt-get (no package source?): {err}")

    base = tmp_path_factory.mktemp("slurm")
    workdir, logfile = base / "work", base / "snakemake.log"
    workdir.mkdir()
    profile = write_profile(base / "profile")
    cluster = slurm.SlurmCluster(base / "state")
    started = time.monotonic()
    try:
        cluster.start()
        env = cluster.env
        env["PATH"] = f"{cluster.bin}:{VENV_BIN}:{env['PATH']}"
        cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(SMOKE),
               "--replace-workflow-config", "--profile", str(base / "profile"), "--workflow-profile", "none",
               "--verbose", "all_tables"]
        with open(logfile, "w") as fh:
            try:
                rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=RUN_TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        wall = time.monotonic() - started
        log = logfile.read_text(errors="replace")
        scontrol = cluster.run("scontrol", "-o", "show", "job", timeout=30, check=False).stdout
        (base / "scontrol.txt").write_text(scontrol)
        if rc != 0:
            failed = [(j.get("JobId"), j.get("Comment"), j.get("JobState")) for j in parse_scontrol(scontrol)
                      if j.get("JobState") != "COMPLETED"]
            raise AssertionError(f"snakemake on SLURM failed ({rc}) after {wall:.0f} s; jobs not COMPLETED: "
                                 f"{failed}\n(full log: {logfile})\n{log[-6000:]}")
        run = Run(workdir=workdir, log=log, wall_s=wall, profile=profile, submissions=submissions(log, scontrol),
                  daemons={k: p.pid for k, p in cluster.procs.items()}, state=cluster.state)
        run.rerun_dryrun = subprocess.run(
            [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(SMOKE),
             "--replace-workflow-config", "-n", "all_tables"],
            capture_output=True, text=True, env=env, timeout=300).stdout
        print(f"\nSLURM smoke run: {len(run.submissions)} SLURM jobs, {wall:.0f} s wall time (log: {logfile})")
        return run
    finally:
        cluster.stop(remove=True)


def check_every_job_went_through_sbatch(run: Run) -> None:
    subs = run.submissions
    assert subs and len(subs) == len(re.findall(r"sbatch call: ", run.log)), len(subs)
    for sub in subs:
        assert sub.record.get("JobState") == "COMPLETED", (sub.slurm_id, sub.name, sub.record)
        # every SLURM job left its log (slurm-keep-successful-logs) under .snakemake/slurm_logs
        assert sub.log.is_file() and ".snakemake/slurm_logs/" in str(sub.log), sub.log
    # the controller itself ran only the local target; everything else was a SLURM job or inside one
    assert re.findall(r"^localrule (\w+):", run.log, re.M) == ["all_tables"]
    in_sbatch = {rule for sub in subs for rule in sub.targets}
    finished = re.findall(r"Finished jobid: \S+ \(Rule: (\w+)\)", run.log)
    assert set(finished) - {"all_tables"} <= in_sbatch, set(finished) - in_sbatch
    assert len(finished) - 1 == sum(len(sub.targets) for sub in subs), (len(finished), len(subs))
    assert all(sub.targets == [sub.name] for sub in subs if sub.kind == "rule")


def check_gpu_rules_requested_and_got_a_gpu(run: Run) -> None:
    gpu_rules = {r for r, spec in run.profile["set-resources"].items() if spec.get("gpu")}
    cpu_partition = run.profile["default-resources"]["slurm_partition"]
    seen = set()
    for sub in run.submissions:
        opts, record = sub.sbatch, sub.record
        if sub.kind == "rule" and sub.name in gpu_rules:
            seen.add(sub.name)
            partition = run.profile["set-resources"][sub.name]["slurm_partition"]
            assert f" -p {partition} " in opts and "--gpus=1" in opts, opts
            assert record["Partition"] == partition and record.get("TresPerJob") == "gres:gpu:1", record
        else:
            assert f" -p {cpu_partition} " in opts and "--gpus" not in opts and "--gres" not in opts, opts
            assert record["Partition"] == cpu_partition and "gpu" not in record.get("TresPerJob", ""), record
        assert "--cpus-per-task=1" in opts and record["NumCPUs"] == "1", (opts, record)
    assert {"train", "reconstruct"} <= seen, seen


def check_small_cpu_jobs_were_grouped(run: Run) -> None:
    """score + the evaluate reading it = one SLURM job (profile `groups:`), never one job per rule."""
    results = run.workdir / "results"
    n_scores = len(list((results / "scores").rglob("*.npz")))
    # evaluations under a table's own protocol (results/eval/.../protocol-<id>/, rule evaluate_protocol) are
    # separate small CPU jobs outside the group
    n_evals = len([f for f in (results / "eval").rglob("metrics.tsv") if not f.parent.name.startswith("protocol-")])
    singles = [s.name for s in run.submissions if s.kind == "rule" and s.name in ("score", "evaluate")]
    groups = [sorted(s.targets) for s in run.submissions if s.kind == "group"]
    assert not singles, singles
    assert len(groups) == n_scores and all(g in (["score"], ["evaluate", "score"]) for g in groups), groups
    assert sum(len(g) for g in groups) == n_scores + n_evals, (groups, n_scores, n_evals)


def test_every_job_went_through_sbatch(slurm_run):
    check_every_job_went_through_sbatch(slurm_run)


def test_gpu_rules_requested_and_got_a_gpu(slurm_run):
    check_gpu_rules_requested_and_got_a_gpu(slurm_run)
    first = {}
    for sub in slurm_run.submissions:
        first.setdefault(sub.name, sub.sbatch)
    print("\nGPU job:   " + first["train"])
    print("CPU job:   " + first["pack"])
    print("group job: " + next((s.sbatch for s in slurm_run.submissions if s.kind == "group"), "(none)"))


def test_small_cpu_jobs_were_grouped(slurm_run):
    check_small_cpu_jobs_were_grouped(slurm_run)


def test_outputs_exist_and_nothing_reruns(slurm_run):
    results = slurm_run.workdir / "results"
    pdf = results / "report" / "benchmark.pdf"
    assert pdf.stat().st_size > 20_000 and pdf.read_bytes()[:4] == b"%PDF"
    for name in ("segmentation", "reconstruction"):
        for ext in ("tsv", "md", "tex"):
            assert (results / "tables" / f"{name}.{ext}").stat().st_size > 0
    assert (results / "models/healthy_t2/vae/default/fold-1/model.pt").exists()
    assert "Nothing to be done" in slurm_run.rerun_dryrun, slurm_run.rerun_dryrun[-3000:]


def test_daemons_stopped_and_state_removed(slurm_run):
    for name, pid in slurm_run.daemons.items():
        assert not Path(f"/proc/{pid}").exists() or name not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
            errors="replace"), f"{name} (pid {pid}) still runs"
    assert not slurm_run.state.exists()

"""The SLURM profile without a cluster: GPU rules always go to the GPU partition with a GPU request,
CPU rules to the CPU partition, resources grow with the attempt, and the partition example is valid.

A ``set-resources`` entry for a rule name that does not exist is silently ignored by Snakemake, and a job
with gpu=1 but no GPU partition would land on the CPU partition, so both are checked here (fast, no SLURM).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "profiles" / "slurm"
SMOKE = ROOT / "tests" / "smoke" / "config.yaml"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
CONFIG = yaml.safe_load((PROFILE / "config.yaml").read_text())
DEFAULTS = CONFIG["default-resources"]
SET = CONFIG.get("set-resources") or {}
CPU_PARTITION = DEFAULTS["slurm_partition"]


def rule_resources() -> dict[str, str]:
    """{rule: text of its resources: block} for every named rule in workflow/rules/*.smk (also those defined
    inside an ``if`` of the config, e.g. ``reconstruct`` under ``jobs.reconstruct: per_dataset``)."""
    out = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        heads = list(re.finditer(r"^[ \t]*(?:rule|checkpoint)\s+(\w+)\s*:", text, re.M))
        for i, head in enumerate(heads):
            block = text[head.end(): heads[i + 1].start() if i + 1 < len(heads) else len(text)]
            m = re.search(r"^\s+resources:\s*\n((?:\s{8,}.*\n)+)", block, re.M)
            out[head.group(1)] = m.group(1) if m else ""
    return out


RULES = rule_resources()
GPU_RULES = sorted(r for r, res in RULES.items() if re.search(r"\bgpu\s*=\s*(?!0\b)", res))


def evaluate(expr, attempt: int):
    """A profile resource value as Snakemake evaluates it (Python expression with `attempt` in scope)."""
    if not isinstance(expr, str):
        return expr
    try:
        return eval(expr, {"attempt": attempt, "threads": 1, "input": SimpleNamespace(size_mb=0)})
    except (NameError, SyntaxError):
        return expr


def test_the_rules_declare_their_gpus():
    assert {"reconstruct", "train"} <= set(GPU_RULES), GPU_RULES


def test_set_resources_name_existing_rules():
    unknown = sorted(set(SET) - set(RULES))
    assert not unknown, f"set-resources for unknown rules (Snakemake ignores them silently): {unknown}"


@pytest.mark.parametrize("rule", GPU_RULES)
def test_gpu_rules_get_the_gpu_partition_and_a_gpu(rule):
    spec = SET.get(rule)
    assert spec, f"rule {rule} declares a GPU but profiles/slurm/config.yaml has no set-resources entry for it"
    assert spec.get("slurm_partition") and spec["slurm_partition"] != CPU_PARTITION, spec
    assert int(spec.get("gpu", 0)) >= 1 or "gpu" in str(spec.get("gres", "")), spec


def test_resources_grow_with_the_attempt():
    for where, spec in [("default-resources", DEFAULTS), *((f"set-resources.{r}", s) for r, s in SET.items())]:
        for key in ("mem_mb", "runtime"):
            if key in spec:
                first, second = evaluate(spec[key], 1), evaluate(spec[key], 2)
                assert isinstance(first, (int, float)) and second > first, f"{where}.{key}: {spec[key]!r}"
    assert evaluate(SET["train"]["runtime"], 9) <= 48 * 60  # capped at the partition limit


def test_rerun_triggers_ignore_mere_touches():
    # for script: rules `code` means "script mtime newer than the output" (Snakemake 9.27 dag.py)
    assert "code" not in CONFIG["rerun-triggers"]
    assert {"params", "input", "software-env"} <= set(CONFIG["rerun-triggers"])


@pytest.fixture(scope="module")
def dryrun(tmp_path_factory) -> str:
    """Output of a dry-run of the smoke config through the profile."""
    workdir = tmp_path_factory.mktemp("profile")
    # --sdm env-modules replaces the profile's conda (a conda dry-run calls `conda info`); no rule has
    # envmodules:, so nothing else changes
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(SMOKE),
           "--replace-workflow-config", "--profile", str(PROFILE), "--workflow-profile", "none",
           "--sdm", "env-modules", "-n", "all_tables"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def dryrun_jobs(dryrun):
    """(rule, resources) of every job of the dry-run."""
    jobs = []
    # group members (score, evaluate) are printed indented under "Group job ..."
    for block in re.split(r"\n(?=\s*(?:local)?(?:rule|checkpoint) \w+:)", dryrun):
        head = re.match(r"\s*(?:local)?(?:rule|checkpoint) (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head and res:
            jobs.append((head.group(1), dict(kv.split("=", 1) for kv in res.group(1).split(", "))))
    return jobs


def test_score_and_evaluate_are_grouped_in_pairs(dryrun_groups):
    assert {"score=evaluate", "evaluate=evaluate"} <= set(CONFIG.get("groups", []))
    # group-components > 1 would put every score/evaluate job into one SLURM job (Snakemake 9.27.1 with a
    # checkpoint in the workflow; see the profile)
    assert dryrun_groups and all(len(g) <= 2 and set(g) <= {"score", "evaluate"} for g in dryrun_groups), \
        sorted({len(g) for g in dryrun_groups})


@pytest.fixture(scope="module")
def dryrun_groups(dryrun):
    """Member rules of every group job of the dry-run."""
    groups, current = [], None
    for line in dryrun.splitlines():
        if re.search(r"Group job \S+ \(jobs in lexicogr\. order\):", line):
            current = []
            groups.append(current)
        elif current is not None and (not line.strip() or line.startswith((" ", "\t"))):
            m = re.match(r"^\s+(?:local)?rule (\w+):", line)
            if m:
                current.append(m.group(1))
        else:
            current = None
    return groups


def test_dryrun_places_every_job(dryrun_jobs):
    rules = {rule for rule, _ in dryrun_jobs}
    assert {"train", "reconstruct", "score", "evaluate"} <= rules, rules
    for rule, res in dryrun_jobs:
        if int(res.get("gpu", 0)) > 0 or rule in GPU_RULES:
            assert int(res.get("gpu", 0)) >= 1, (rule, res)
            assert res["slurm_partition"] == SET[rule]["slurm_partition"] != CPU_PARTITION, (rule, res)
        else:
            assert res["slurm_partition"] == CPU_PARTITION, (rule, res)


def test_partition_example_keeps_gpu_jobs_off_cpu_partitions():
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm.partitions")
    partitions = plugin.read_partition_file(PROFILE / "partitions.yaml")

    class Job(SimpleNamespace):
        def __str__(self):
            return self.name

    log = SimpleNamespace(info=lambda *a, **k: None, debug=lambda *a, **k: None, warning=lambda *a, **k: None)
    gpu_job = Job(name="train", threads=2, resources=SimpleNamespace(
        get=lambda k, d=None: {"gpu": 1, "mem_mb": 16000, "runtime": 1440}.get(k, d)))
    cpu_job = Job(name="score", threads=1, resources=SimpleNamespace(
        get=lambda k, d=None: {"mem_mb": 4000, "runtime": 30}.get(k, d)))
    gpu_partitions = {p.name for p in partitions if p.limits.max_gpu > 0}
    assert gpu_partitions and plugin.get_best_partition(partitions, gpu_job, log) in gpu_partitions
    assert plugin.get_best_partition(partitions, cpu_job, log) not in gpu_partitions


def test_jobs_see_only_the_given_configfile(tmp_path):
    """Snakemake 9 starts every SLURM job with `--configfiles X` only (no --replace-workflow-config). Were
    config/config.yaml merged into X, any key X leaves out (e.g. scorings.mhd_diag.samples) would silently
    change that job's params (seen: the smoke run on SLURM failed in `score`). The Snakefile loads the default
    config only when no --configfile is given."""
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfiles", str(SMOKE),
           "-n", "all_tables"]  # the config arguments a spawned SLURM job is given
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is extended by additional config" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("rule", ["train", "pretrain_encoder"])
def test_training_is_warned_before_the_time_limit_with_a_signal_it_handles(rule):
    """train and pretrain_encoder (both run by training.fit) ask SLURM for SIGUSR1 five minutes before their time
    limit; the training loop must treat exactly that signal as save-and-stop, and the plugin must accept the
    option (it rejects options it manages)."""
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    from brainuad.training import loop

    extra = evaluate(SET[rule]["slurm_extra"], 1)
    m = re.fullmatch(r"--signal=(?:B:)?(\w+)@(\d+)", extra)
    assert m, extra
    assert int(m.group(2)) >= 60
    import signal as sig
    with loop._StopFlag() as flag:
        os.kill(os.getpid(), getattr(sig, "SIG" + m.group(1)))
        assert flag.requested
    validate_slurm_extra(SimpleNamespace(resources=SimpleNamespace(slurm_extra=extra)))  # raises if forbidden

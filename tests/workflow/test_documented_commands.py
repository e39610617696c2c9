"""Every ``snakemake …`` command printed in README.md and config/README.md, dry-run exactly as written.

A documented command that stops with a traceback is the first thing a new user meets (e.g.
``snakemake --configfile FILE all_tables`` reads ``all_tables`` as a second config file), so each command
found in the two READMEs is parsed by Snakemake's own argument parser and dry-run (``-n`` appended) in a
scratch folder that mirrors the repository. Two additions, both because this machine has no conda: a command
using the SLURM profile also gets ``--sdm env-modules`` (the profile's conda deployment would call
``conda info``), and ``--conda-create-envs-only`` (which needs conda itself) is only parsed, not run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", ROOT / "config" / "README.md")
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TARGETS = {"all", "all_tables", "all_models", "all_sweeps", "all_data", "all_maps", "report"}

pytestmark = pytest.mark.workflow


def documented_commands(text: str) -> list[str]:
    """``snakemake …`` commands of a Markdown text: lines of fenced code blocks, inline code spans, and the
    command inside ``--wrap "…"`` of an sbatch line; whitespace normalised, in order, without repeats."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        found += [line.strip() for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    commands = []
    for item in found:
        wrapped = re.search(r'--wrap "(snakemake [^"]*)"', item)
        command = wrapped.group(1) if wrapped else item
        if command.startswith("snakemake ") and command not in commands:
            commands.append(command)
    return commands


def all_commands() -> list[str]:
    commands = []
    for doc in DOCS:
        commands += [c for c in documented_commands(doc.read_text()) if c not in commands]
    return commands


def test_extraction_finds_code_blocks_spans_and_wrapped_commands():
    text = ("```bash\nmake demo\nsnakemake a --cores 1\n```\nRun `snakemake b\n  --cores 2` or `snakemake.utils`;\n"
            '`sbatch -c 4 --wrap "snakemake c --cores 4"`, again `snakemake a --cores 1`.\n')
    assert documented_commands(text) == ["snakemake a --cores 1", "snakemake b --cores 2", "snakemake c --cores 4"]


def test_the_readmes_document_the_main_commands():
    commands = all_commands()
    assert any("--profile profiles/slurm" in c and "all_tables" in c for c in commands)
    assert any("all_data" in c for c in commands) and any("--configfile" in c for c in commands)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A scratch folder that looks like the repository root (links), plus ``my.yaml`` as the README's
    ``cp config/config.yaml my.yaml`` step makes it."""
    where = tmp_path_factory.mktemp("documented")
    for name in ("Snakefile", "workflow", "config", "profiles", "src", "envs"):
        (where / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "config" / "config.yaml", where / "my.yaml")
    return where


@pytest.mark.parametrize("command", all_commands())
def test_documented_command_parses_and_dry_runs(command, checkout):
    from snakemake.cli import get_argument_parser

    argv = shlex.split(command)[1:]
    args = get_argument_parser().parse_args(argv)
    for configfile in args.configfile or []:  # a target swallowed by --configfile shows up here
        assert (checkout / configfile).is_file(), f"{command!r}: config file {configfile!r} does not exist"
    assert set(args.targets or []) <= TARGETS, f"{command!r}: unknown target(s) {args.targets}"
    if args.conda_create_envs_only:
        return  # needs conda, which this machine does not have; the parse above is the check
    if args.report:
        return  # --report reads a finished run's outputs (make demo runs it after the workflow); parse only
    extra = ["-n"] + (["--sdm", "env-modules"] if "--profile" in argv else [])
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run([SNAKEMAKE, *argv, *extra], cwd=checkout, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"{command!r} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr

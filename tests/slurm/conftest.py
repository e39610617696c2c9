"""The `slurm` marker. Tests marked with it start a real one-node SLURM (minutes); they run only when asked
for: `make test-slurm`, `pytest -m slurm`, or BRAINUAD_SLURM_TESTS=1 in the environment."""

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: starts a one-node SLURM and runs the smoke workflow through it (slow)")


def pytest_collection_modifyitems(config, items):
    if "slurm" in (config.getoption("markexpr") or "") or os.environ.get("BRAINUAD_SLURM_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="SLURM end-to-end test: run `make test-slurm` (or pytest -m slurm)")
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(skip)

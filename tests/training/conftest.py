"""Shared checks of the training-loop tests."""

import pytest
import torch

from brainuad.training import fit


@pytest.fixture
def resumed_equals_uninterrupted(tmp_path):
    """Check that an interrupted and resumed ``fit`` equals one run straight through.

    The returned function trains once without a stop (folder ``a``) and once stopped after ``stop`` steps
    and rerun (folder ``b``), asserts equal results and bit-identical saved weights, and returns the
    straight run's state dict.
    """

    def check(arch, hparams, train, val, settings, stop=2):
        def run(name, **extra):
            return fit(arch, hparams, train, val, settings, out_model=tmp_path / name / "m.pt",
                       out_log=tmp_path / name / "l.tsv", workdir=tmp_path / name / "w", progress=False,
                       device="cpu", **extra)

        ref = run("a")
        assert run("b", stop_after_steps=stop)["status"] == "interrupted"
        assert run("b") == ref
        a = torch.load(tmp_path / "a" / "m.pt", weights_only=False)["state_dict"]
        b = torch.load(tmp_path / "b" / "m.pt", weights_only=False)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a)
        return a

    return check

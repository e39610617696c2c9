"""Inference-time table: means, std, reference percentages (hand-computed)."""

import numpy as np
import pytest

from brainuad.reporting.timing import display, inference_time_table, read_timing


def test_means_std_and_reference_percentages():
    entries = [
        {"row": "pDDPM", "seconds_per_volume": 2.0, "samples": 1, "hardware": "cpu"},
        {"row": "pDDPM", "seconds_per_volume": 4.0, "samples": 1, "hardware": "cpu"},
        {"row": "cDDPM", "seconds_per_volume": 1.5, "samples": 1, "hardware": "cpu"},
        {"row": "cDDPM", "seconds_per_volume": 2.5, "samples": 1, "hardware": "cpu"},
        {"row": "VAE", "seconds_per_volume": 0.5, "samples": 10, "hardware": "cpu"},
    ]
    t = inference_time_table(entries, reference="pDDPM").set_index("row")
    assert list(t.index) == ["pDDPM", "cDDPM", "VAE"]
    assert t.loc["pDDPM", "seconds_per_volume"] == pytest.approx(3.0)
    assert t.loc["pDDPM", "std"] == pytest.approx(np.sqrt(2.0))  # sample std of (2, 4)
    assert t.loc["cDDPM", "vs_reference_pct"] == pytest.approx(100 * (2.0 / 3.0 - 1))  # 33 % faster
    assert t.loc["VAE", "n_jobs"] == 1 and t.loc["VAE", "std"] == 0.0 and t.loc["VAE", "samples"] == "10"
    shown = display(t.reset_index())
    assert shown.loc["cDDPM", "vs reference"] == "-33 %" and shown.loc["pDDPM", "s / volume"] == "3.000 ± 1.414"


def test_unknown_reference_and_missing_timing(tmp_path):
    with pytest.raises(ValueError, match="reference row 'X'"):
        inference_time_table([{"row": "A", "seconds_per_volume": 1.0, "samples": 1, "hardware": "cpu"}], reference="X")
    old = tmp_path / "old.npz"
    np.savez(old, recons=np.zeros((1, 1, 2, 2, 2)))
    with pytest.raises(ValueError, match="no timing stored"):
        read_timing(old)
    new = tmp_path / "new.npz"
    np.savez(new, recons=np.zeros(1), seconds_per_volume=np.float64(0.25), samples=np.int64(3), hardware=np.asarray("H200"))
    assert read_timing(new) == {"seconds_per_volume": 0.25, "samples": 3, "hardware": "H200"}

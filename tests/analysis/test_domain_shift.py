import math

import numpy as np
import pytest
import torch

from brainuad.analysis import contrast_levels, entropy, histogram_shift, intensity_histogram


def test_contrast_level_one_is_identity_and_levels_are_monotone_powers():
    x = np.linspace(0, 1, 101)
    out = contrast_levels(x)
    assert sorted(out) == [0.3, 0.7, 1.0, 1.5, 2.0]
    np.testing.assert_array_equal(out[1.0], x)
    np.testing.assert_allclose(out[2.0], x**2)
    np.testing.assert_allclose(out[0.3][[0, 25, 100]], [0.0, 0.25**0.3, 1.0])
    for cl, y in out.items():
        assert np.all(np.diff(y) > 0), cl  # strictly increasing
        assert y[0] == 0 and y[-1] == 1
    # cl < 1 brightens, cl > 1 darkens the mid-tones
    assert out[0.3][50] > out[0.7][50] > x[50] > out[1.5][50] > out[2.0][50]
    t = contrast_levels(torch.tensor([0.5, 1.2]), (2.0,))[2.0]
    assert torch.allclose(t, torch.tensor([0.25, 1.0]))


def test_histogram_is_a_density_and_clips_out_of_range_values():
    v = np.array([0.0, 0.1, 0.1, 0.99, 1.0, 1.3, -0.2])
    h = intensity_histogram(v, bins=10)
    assert h.shape == (10,)
    assert h.sum() * 0.1 == pytest.approx(1.0)
    counts = h * len(v) * 0.1
    np.testing.assert_allclose(counts, [2, 2, 0, 0, 0, 0, 0, 0, 0, 3])


def test_entropy_uniform_delta_and_hand_values():
    assert entropy(np.ones(500)) == pytest.approx(math.log(500))
    assert entropy(intensity_histogram((np.arange(500) + 0.5) / 500, bins=500)) == pytest.approx(math.log(500))
    delta = np.zeros(500)
    delta[123] = 7.0
    assert entropy(delta) == 0.0
    assert entropy([1, 1, 2]) == pytest.approx(-(0.25 * math.log(0.25) * 2 + 0.5 * math.log(0.5)))
    assert entropy([1, 1, 1, 1], base=2) == pytest.approx(2.0)
    assert entropy([3, 0, 3]) == pytest.approx(math.log(2))  # counts or densities: same


def test_histogram_shift_on_healthy_voxels_only():
    x = np.zeros((2, 4, 4))
    x[0] = 0.25
    x[1] = 0.75  # input: two values -> H = log 2
    recon = np.full_like(x, 0.5)  # recon collapses to one value -> H = 0
    brain = np.ones_like(x, dtype=bool)
    lesion = np.zeros_like(brain)
    lesion[1, 0, 0] = True
    recon[1, 0, 0] = 0.9  # only in the lesion: must be ignored
    res = histogram_shift(x, recon, brain, bins=500, lesions=lesion)
    assert res["n_voxels"] == 31
    p = np.array([16, 15]) / 31
    assert res["entropy_input"] == pytest.approx(-(p * np.log(p)).sum())
    assert res["entropy_recon"] == 0.0
    assert res["entropy_difference"] == pytest.approx(-res["entropy_input"])
    assert res["kld_p83"] == pytest.approx(res["entropy_input"])
    assert res["hist_input"].shape == (500,) and res["bin_edges"].shape == (501,)
    same = histogram_shift(x, x, brain & ~lesion)
    assert same["entropy_difference"] == 0.0
    with pytest.raises(ValueError):
        histogram_shift(x, recon, np.zeros_like(brain))


def test_contrast_sweep_reconstructs_every_level_and_measures_its_shift():
    from brainuad.analysis.contrast_sweep import contrast_sweep
    from brainuad.inference import run_model
    from brainuad.models import build

    torch.manual_seed(0)
    model = build("ae", image_size=(8, 8), channels=[4], latent_dim=2).eval()
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 8, 8)).astype(np.float32)
    masks = np.zeros(images.shape, bool)
    masks[:, :, 2:6, 2:6] = True
    rows, hists = contrast_sweep(model, images, masks, (0.5, 2.0), bins=10, batch_size=3)
    assert [r["contrast_level"] for r in rows] == [0.5, 2.0]
    assert sorted(hists) == ["bin_edges", "input_0.5", "input_2.0", "recon_0.5", "recon_2.0"]
    x = images**2.0
    rec = run_model(model, x, masks, samples=1, batch_size=3)[0].astype(np.float32)
    expected = histogram_shift(x, np.clip(rec, 0, 1), masks, bins=10)
    assert rows[1]["entropy_difference"] == expected["entropy_difference"] and rows[1]["n_voxels"] == 2 * 3 * 16
    assert rows[1]["l1_brain"] == pytest.approx(float(np.abs(rec - x)[masks].mean()))
    np.testing.assert_array_equal(hists["recon_2.0"], expected["hist_recon"])


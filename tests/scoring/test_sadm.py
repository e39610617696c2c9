"""The SADM score AS = beta * x~ + (1 - beta) * y (brainuad.scoring.sadm) and its stored-output path."""

import numpy as np
import pytest
from scipy import ndimage

from brainuad.scoring import score, uses_recons_and_maps
from brainuad.scoring.stored import score_stored


def _case(seed=0, shape=(1, 1, 6, 12, 12)):
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    recons = np.clip(image[None] + 0.2 * rng.standard_normal((2, *shape)), 0, 1).astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    mask[..., 1:-1, 2:-2] = True
    pred = rng.random(shape).astype(np.float32)
    return image, recons, mask, pred


def test_beta_one_is_the_cddpm_ssim_map():
    image, recons, mask, pred = _case()
    ssim_map = score("ssim", image, recons, mask, sigma=1.0)
    out = score("sadm", image, recons, mask, model_map=pred, beta=1.0, median=0)
    np.testing.assert_array_equal(out, ssim_map)
    # with the thesis' median filter: median5 of the masked SSIM map, masked again (independent scipy call)
    out5 = score("sadm", image, recons, mask, model_map=pred, beta=1.0, median=5)
    want = ndimage.median_filter(ssim_map[0, 0], size=5) * mask[0, 0]
    np.testing.assert_allclose(out5[0, 0], want, rtol=0, atol=1e-7)


def test_beta_zero_is_the_unet_map():
    image, recons, mask, pred = _case(1)
    out = score("sadm", image, recons, mask, model_map=pred, beta=0.0)
    np.testing.assert_array_equal(out, pred * mask)


def test_beta_weights_linearly_and_half_ranks_like_the_sum():
    image, recons, mask, pred = _case(2)
    a = score("sadm", image, recons, mask, model_map=pred, beta=1.0)
    b = score("sadm", image, recons, mask, model_map=pred, beta=0.0)
    for beta in (0.25, 0.5, 0.8):
        np.testing.assert_allclose(score("sadm", image, recons, mask, model_map=pred, beta=beta),
                                   beta * a + (1 - beta) * b, atol=1e-6)
    # the thesis' AS = x~ + y is twice beta = 0.5: the same ranking of voxels
    half = score("sadm", image, recons, mask, model_map=pred, beta=0.5)
    np.testing.assert_allclose(2 * half, a + b, atol=1e-6)


def test_bad_beta_and_missing_map():
    image, recons, mask, pred = _case()
    with pytest.raises(ValueError, match="beta"):
        score("sadm", image, recons, mask, model_map=pred, beta=1.5)
    with pytest.raises(ValueError, match="model_map"):
        score("sadm", image, recons, mask)
    assert uses_recons_and_maps("sadm") and not uses_recons_and_maps("ssim")


def test_score_stored_combines_recons_and_maps(tmp_path):
    image, recons, mask, pred = _case(3, shape=(1, 1, 4, 8, 8))
    np.savez(tmp_path / "volumes.npz", images=image[:, 0].astype(np.float16), masks=mask[:, 0].astype(np.uint8),
             subjects=np.array(["s"]))
    rec16 = recons[:, :, 0].astype(np.float16)
    np.savez(tmp_path / "recon.npz", recons=rec16, maps=pred[:, 0].astype(np.float16),
             subjects=np.array(["s"]), split=np.array(["test"]))
    out = score_stored({"name": "sadm", "beta": 0.0}, tmp_path / "recon.npz", tmp_path / "volumes.npz")
    np.testing.assert_allclose(out["maps"][0], (pred[0, 0] * mask[0, 0]).astype(np.float16), atol=1e-3)
    ssim_out = score_stored({"name": "ssim"}, tmp_path / "recon.npz", tmp_path / "volumes.npz")
    one = score_stored({"name": "sadm", "beta": 1.0, "median": 0}, tmp_path / "recon.npz", tmp_path / "volumes.npz")
    np.testing.assert_array_equal(one["maps"], ssim_out["maps"])
    np.savez(tmp_path / "only.npz", recons=rec16, subjects=np.array(["s"]), split=np.array(["test"]))
    with pytest.raises(ValueError, match="model's own maps"):
        score_stored({"name": "sadm"}, tmp_path / "only.npz", tmp_path / "volumes.npz")

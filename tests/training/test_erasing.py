"""Spatial erasing (P8.1): erased fraction, side, fill statistics, p, target untouched, resumable 3D training."""

import numpy as np
import pytest
import torch

from brainuad.training import TrainSettings, fit
from brainuad.training.erasing import Eraser, box_sides, brain_midline, from_config


def _brain(shape, lo=0.2, hi=0.9, seed=0):
    """Volume/slice with a 'brain' (uniform intensities in [lo, hi]) in a box off the centre; zero background."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(shape)
    idx = tuple(slice(2, n - 2) for n in shape[:-1]) + (slice(4, shape[-1] - 2),)
    x[idx] = lo + (hi - lo) * torch.rand(x[idx].shape, generator=g)
    return x


def test_box_sides_keep_the_aspect_ratio_and_the_fraction():
    assert box_sides((64, 64), 0.25) == (32, 32)
    assert box_sides((64, 64, 32), 0.125) == (32, 32, 16)
    assert box_sides((10, 10), 1e-6) == (1, 1)


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 16)])
def test_patch_erases_one_box_of_1_to_25_percent(shape):
    eraser = Eraser("patch", p=1.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape)
    fractions = []
    for _ in range(200):
        m = eraser.sample_mask(x, g)
        nz = torch.nonzero(m)
        lo, hi = nz.min(0).values, nz.max(0).values
        assert int(m.sum()) == int(torch.prod(hi - lo + 1))  # one axis-aligned box
        fractions.append(float(m.float().mean()))
    fractions = np.array(fractions)
    # rounding of the sides: a side of n * f^(1/d) +- 0.5 voxel
    assert fractions.min() >= 0.006 and fractions.max() <= 0.27
    assert fractions.min() < 0.03 and fractions.max() > 0.2  # the whole range is drawn
    assert abs(fractions.mean() - 0.13) < 0.02  # f ~ U(0.01, 0.25): mean 0.13


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 16)])
def test_multi_erases_up_to_10_boxes_totalling_at_most_25_percent(shape):
    eraser = Eraser("multi", p=1.0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape)
    fr = np.array([float(eraser.sample_mask(x, g).float().mean()) for _ in range(200)])
    assert fr.max() <= 0.27 and fr.min() > 0
    assert fr.mean() < 0.13  # overlaps only reduce the union below the nominal total (mean 0.13)
    assert fr.mean() > 0.08


def test_multi_draws_up_to_max_patches_boxes():
    from scipy import ndimage

    eraser = Eraser("multi", p=1.0, min_fraction=0.001, max_fraction=0.002, max_patches=3)
    g = torch.Generator().manual_seed(2)
    counts = {ndimage.label(eraser.sample_mask(torch.rand(128, 128), g).numpy())[1] for _ in range(100)}
    assert counts <= {1, 2, 3} and {1, 3} <= counts  # tiny boxes rarely touch


def test_brain_midline_is_the_centre_of_the_brain_bounding_box():
    x = torch.zeros(4, 10, 20)
    x[1, 3, 6:15] = 1.0  # columns 6..14 -> centre (6 + 14 + 1) // 2 = 10
    assert brain_midline(x) == 10
    assert brain_midline(torch.zeros(8, 8)) == 4


def test_half_erases_the_left_or_right_brain_half_in_consecutive_slices():
    eraser = Eraser("half", p=1.0, max_slices=5)
    g = torch.Generator().manual_seed(3)
    x = _brain((16, 12, 24))  # brain columns 4..21 -> midline 13
    mid = brain_midline(x)
    assert mid == 13
    sides, lengths = set(), set()
    for _ in range(100):
        m = eraser.sample_mask(x, g)
        assert not (m & (x <= 0)).any()  # only brain voxels
        cols = torch.nonzero(m.any(0).any(0)).flatten()
        left = int(cols.max()) < mid
        assert left or int(cols.min()) >= mid
        sides.add(left)
        sl = torch.nonzero(m.flatten(1).any(1)).flatten()
        assert int(sl.max() - sl.min() + 1) == len(sl) <= 5  # consecutive axial slices
        lengths.add(len(sl))
        # inside the chosen slices, every brain voxel of that side is erased
        side = (slice(0, mid) if left else slice(mid, None))
        assert torch.equal(m[sl][..., side], x[sl][..., side] > 0)
    assert sides == {True, False} and lengths == {1, 2, 3, 4, 5}


def test_half_in_2d_erases_the_whole_side_of_the_slice():
    g = torch.Generator().manual_seed(4)
    x = _brain((16, 24))
    m = Eraser("half", p=1.0).sample_mask(x, g)
    mid = brain_midline(x)
    brain = x > 0
    assert torch.equal(m, brain & (torch.arange(24) < mid)) or torch.equal(m, brain & (torch.arange(24) >= mid))


def test_p_is_the_fraction_of_erased_samples_and_the_input_is_not_modified():
    batch = torch.rand(4000, 1, 8, 8) * 0.9 + 0.1
    keep = batch.clone()
    out = Eraser("patch", fill="zero", p=0.3)(batch, torch.Generator().manual_seed(5))
    assert torch.equal(batch, keep)
    erased = (out != batch).flatten(1).any(1).float().mean()
    assert abs(float(erased) - 0.3) < 0.03  # binomial sd 0.007
    assert not Eraser("patch", p=0.0)(batch, torch.Generator()).ne(batch).any()


def test_zero_fill_and_sample_fill_use_the_image_distribution():
    g = torch.Generator().manual_seed(6)
    x = torch.zeros(1, 1, 64, 64)
    x[0, 0, 8:56, 8:56] = torch.where(torch.rand(48, 48, generator=g) < 0.5, 0.3, 0.7)  # two intensities
    z = Eraser("patch", fill="zero", p=1.0)(x, torch.Generator().manual_seed(7))
    m = z != x
    assert m.any() and (z[m] == 0).all()
    s = Eraser("patch", fill="sample", p=1.0, min_fraction=0.2, max_fraction=0.25)
    mask = s.masks(x, torch.Generator().manual_seed(8))
    out = s(x, torch.Generator().manual_seed(8))
    vals = out[mask]
    assert torch.unique(vals).tolist() == pytest.approx([0.3, 0.7])  # only brain values, never the background 0
    assert abs(float((vals == x.max()).float().mean()) - 0.5) < 0.05
    assert torch.equal(out[~mask], x[~mask])


def test_gaussian_fill_matches_the_brain_mean_and_std():
    g = torch.Generator().manual_seed(9)
    x = _brain((64, 64), lo=0.3, hi=0.7)
    e = Eraser("patch", fill="gaussian", p=1.0, min_fraction=0.2, max_fraction=0.25)
    vals = e.fill_values(x, 20000, g)
    brain = x[x > 0]
    assert abs(float(vals.mean() - brain.mean())) < 0.005
    assert abs(float(vals.std() - brain.std())) < 0.005
    assert vals.min() >= 0 and vals.max() <= 1


def test_from_config_validates():
    assert from_config(None) is None and from_config({"mode": "none"}) is None
    assert from_config({"mode": "half", "fill": "zero"}) == Eraser("half", fill="zero")
    with pytest.raises(ValueError, match="unknown key.*'size'"):
        from_config({"mode": "patch", "size": 3})
    with pytest.raises(ValueError, match="mode must be one of"):
        from_config({"mode": "box"})
    with pytest.raises(ValueError, match="fill must be one of"):
        from_config({"mode": "patch", "fill": "noise"})


def _vols(seed=0, n=4):
    rng = np.random.default_rng(seed)
    base = np.zeros((n, 8, 16, 16), np.float32)
    base[:, 2:6, 4:12, 4:12] = 0.8
    return (base + 0.05 * rng.random(base.shape)).astype(np.float16)


HP3 = {"image_size": [8, 16, 16], "channels": [4, 8], "latent_dim": 8}


def test_erasing_never_touches_the_target(tmp_path, monkeypatch):
    """The loop passes the erased batch as input and the sampled, un-erased batch as target."""
    from brainuad.models.spatial_vae import SpatialVAE

    seen = []
    orig = SpatialVAE.loss

    def spy(self, batch, generator=None, target=None):
        seen.append((batch.clone(), None if target is None else target.clone()))
        return orig(self, batch, generator, target)

    monkeypatch.setattr(SpatialVAE, "loss", spy)
    vols = _vols()
    settings = TrainSettings(max_steps=6, batch_size=2, lr=1e-3, val_every=100, seed=1,
                             erasing={"mode": "patch", "fill": "zero", "p": 1.0})
    fit("vae3d", HP3, vols, vols[:1], settings, out_model=tmp_path / "m.pt", out_log=tmp_path / "l.tsv",
        workdir=tmp_path / "w", progress=False, device="cpu")
    train = [s for s in seen if s[1] is not None][:6]
    assert len(train) == 6
    packed = {v.astype(np.float32).tobytes() for v in vols}
    for inp, tgt in train:
        assert all(t.numpy().tobytes() in packed for t in tgt[:, 0])  # targets = packed volumes, unchanged
        assert ((inp != tgt).flatten(1).any(1)).all()  # p = 1: every input erased
        assert (inp[inp != tgt] == 0).all()


def test_model_without_target_refuses_erasing(tmp_path):
    settings = TrainSettings(max_steps=1, batch_size=2, erasing={"mode": "patch"})
    with pytest.raises(ValueError, match="un-erased target; 'vae' does not"):
        fit("vae", {"image_size": [16, 16], "channels": [4, 8], "latent_dim": 4}, _vols(),
            _vols()[:1], settings, out_model=tmp_path / "m.pt", out_log=tmp_path / "l.tsv",
            workdir=tmp_path / "w", progress=False, device="cpu")


@pytest.mark.parametrize("mode", ["multi", "half"])
def test_erased_3d_training_resumes_bit_identically(tmp_path, mode, resumed_equals_uninterrupted):
    vols = _vols(seed=2)
    settings = TrainSettings(max_steps=6, batch_size=2, lr=1e-3, val_every=3, seed=4, checkpoint_every_s=1e9,
                             erasing={"mode": mode, "fill": "sample", "p": 0.5})
    kw = dict(progress=False, device="cpu")
    a = resumed_equals_uninterrupted("vae3d", HP3, vols[:3], vols[3:], settings)
    # erasing changes the training: same seed without erasing gives other weights
    plain = TrainSettings(**{**settings.__dict__, "erasing": None})
    fit("vae3d", HP3, vols[:3], vols[3:], plain, out_model=tmp_path / "c/m.pt", out_log=tmp_path / "c/l.tsv",
        workdir=tmp_path / "c/w", **kw)
    c = torch.load(tmp_path / "c/m.pt", weights_only=False)["state_dict"]
    assert not all(torch.equal(a[k], c[k]) for k in a)

import numpy as np
import pandas as pd
import pytest
import torch

from brainuad.models.encoder import ResNetEncoder
from brainuad.models.masked_autoencoder import MaskedAutoencoder, masked_mse, random_patch_mask
from brainuad.training import TrainSettings
from brainuad.training.loop import validation_loss
from brainuad.training.pretrain import pretrain_encoder

TINY = {"channels": [4, 8, 8], "blocks": [1, 1, 1], "context_dim": 8}


def _vols(seed=0):
    rng = np.random.default_rng(seed)
    v = np.zeros((5, 4, 32, 32), np.float32)
    v[:, :, 8:24, 8:24] = 0.7
    v[:, :, 14:18, :] = 0.3
    return (v + 0.05 * rng.random(v.shape)).astype(np.float16)


def test_mask_ratio_is_exact_and_patches_are_square():
    g = torch.Generator().manual_seed(0)
    for ratio, patch, hw in ((0.65, 8, 64), (0.5, 4, 32), (0.0, 8, 32), (1.0, 8, 32), (0.3, 16, 48)):
        m = random_patch_mask((5, 1, hw, hw), ratio, patch, g)
        assert m.shape == (5, 1, hw, hw) and m.dtype == torch.bool
        n = (hw // patch) ** 2
        grid = m[:, 0, ::patch, ::patch]
        assert (grid.flatten(1).sum(1) == round(ratio * n)).all()
        assert torch.equal(m, grid.repeat_interleave(patch, 1).repeat_interleave(patch, 2).unsqueeze(1))
    with pytest.raises(ValueError):
        random_patch_mask((1, 30, 30), 0.5, 8)


def test_masks_differ_per_sample_and_are_seeded():
    a = random_patch_mask((6, 64, 64), 0.65, 8, torch.Generator().manual_seed(3))
    b = random_patch_mask((6, 64, 64), 0.65, 8, torch.Generator().manual_seed(3))
    c = random_patch_mask((6, 64, 64), 0.65, 8, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 6))


def test_loss_only_counts_masked_pixels():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 16, 16, generator=g)
    mask = random_patch_mask(target.shape, 0.5, 4, g)
    pred = torch.rand(3, 1, 16, 16, generator=g)
    base = masked_mse(pred, target, mask)
    changed = torch.where(mask, pred, pred + 100.0)  # only unmasked pixels change
    assert torch.equal(masked_mse(changed, target, mask), base)
    assert masked_mse(torch.where(mask, pred + 1.0, pred), target, mask) != base
    expected = ((pred - target) ** 2)[mask].mean()
    assert torch.allclose(base, expected)
    # the gradient reaches masked pixels only
    p = pred.clone().requires_grad_(True)
    masked_mse(p, target, mask).backward()
    assert (p.grad[~mask] == 0).all() and (p.grad[mask] != 0).any()


def test_masked_autoencoder_shapes_and_input_masking():
    mae = MaskedAutoencoder(TINY, decoder_dim=16).eval()
    x = torch.rand(2, 1, 32, 32)
    mask = random_patch_mask(x.shape, 0.65, mae.encoder.downsample_factor, torch.Generator().manual_seed(0))
    assert mae(x, mask).shape == x.shape
    # the encoder never sees erased pixels: changing them does not change the output
    x2 = torch.where(mask, torch.rand(2, 1, 32, 32), x)
    with torch.no_grad():
        assert torch.equal(mae(x, mask), mae(x2, mask))


def test_masked_autoencoder_loss_is_masked_mse_on_masks_from_the_generator():
    mae = MaskedAutoencoder(TINY, mask_ratio=0.5, patch=4, decoder_dim=16).eval()
    x = torch.rand(3, 1, 32, 32)
    mask = random_patch_mask(x.shape, 0.5, 4, torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = masked_mse(mae(x, mask), x, mask)
        assert torch.equal(mae.loss(x, generator=torch.Generator().manual_seed(2)), expected)


KW = dict(encoder_hparams=TINY, mask_ratio=0.65, patch=4, max_steps=10, batch_size=8, lr=3e-3, seed=7,
          device="cpu", progress=False, val_every=5, decoder_dim=16)


def _run(tmp_path, name, **kw):
    vols = _vols()
    return pretrain_encoder(vols[:4], vols[4:], out_path=tmp_path / name / "enc.pt", out_log=tmp_path / name / "log.tsv",
                            workdir=tmp_path / name / "work", **{**KW, **kw})


def test_short_pretraining_writes_loadable_checkpoint_and_is_deterministic(tmp_path):
    res = _run(tmp_path, "a")
    assert res["status"] == "done" and res["step"] == 10
    torch.manual_seed(KW["seed"])  # the untrained objective, initialised as the loop does
    untrained = MaskedAutoencoder(TINY, mask_ratio=0.65, patch=4, decoder_dim=16)
    settings = TrainSettings(batch_size=8, val_every=5, seed=7)
    assert res["best_val_loss"] < validation_loss(untrained, _vols()[4:], settings, torch.device("cpu"))
    log = pd.read_csv(tmp_path / "a/log.tsv", sep="\t")
    assert list(log.columns) == ["step", "loss", "val_loss", "seconds"] and len(log) == 10
    assert list(log.dropna(subset=["val_loss"])["step"]) == [5, 10]
    ckpt = torch.load(tmp_path / "a/enc.pt", weights_only=False)
    assert set(ckpt) == {"encoder_hparams", "encoder_state_dict", "step", "val_loss", "mask_ratio", "patch"}
    assert ckpt["mask_ratio"] == 0.65 and ckpt["patch"] == 4 and ckpt["step"] == res["best_step"]
    assert ckpt["val_loss"] == pytest.approx(res["best_val_loss"])
    enc = ResNetEncoder(**ckpt["encoder_hparams"])
    enc.load_state_dict(ckpt["encoder_state_dict"])
    assert enc(torch.rand(2, 1, 32, 32)).shape == (2, 8)
    again = _run(tmp_path, "b")
    assert again == res
    other = torch.load(tmp_path / "b/enc.pt", weights_only=False)["encoder_state_dict"]
    assert all(torch.equal(ckpt["encoder_state_dict"][k], other[k]) for k in other)


def test_interrupted_pretraining_resumes_to_identical_weights(tmp_path):
    ref = _run(tmp_path, "a")
    part = _run(tmp_path, "b", stop_after_steps=3)
    assert part["status"] == "interrupted" and part["step"] == 3
    assert (tmp_path / "b/work/state.pt").exists() and not (tmp_path / "b/enc.pt").exists()
    done = _run(tmp_path, "b")
    assert done == ref
    a = torch.load(tmp_path / "a/enc.pt", weights_only=False)
    b = torch.load(tmp_path / "b/enc.pt", weights_only=False)
    assert a.keys() == b.keys() and a["step"] == b["step"] and a["val_loss"] == b["val_loss"]
    sa, sb = a["encoder_state_dict"], b["encoder_state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    la, lb = pd.read_csv(tmp_path / "a/log.tsv", sep="\t"), pd.read_csv(tmp_path / "b/log.tsv", sep="\t")
    pd.testing.assert_frame_equal(la.drop(columns="seconds"), lb.drop(columns="seconds"))

"""SADM Stage II (brainuad.models.sadm): shapes, the frozen Stage I, the loss and training through fit()."""

import numpy as np
import pytest
import torch

from brainuad.models import build
from brainuad.models.sadm import SegmentationUnet
from brainuad.training import TrainSettings, fit, load_model
from brainuad.training.stage2 import stage1_spec, stage2_hparams, stage2_volumes

STAGE1 = dict(image_size=[16, 16], channels=[4, 8], res_blocks=1, context_dim=4, encoder_channels=[4, 8],
              encoder_blocks=[1, 1], t_test=500)


@pytest.fixture
def stage1_ckpt(tmp_path):
    torch.manual_seed(0)
    model = build("cddpm", **STAGE1)
    # non-trivial batch-norm statistics, so a train-mode forward of Stage I would change them
    with torch.no_grad():
        model.train()
        model.context(torch.rand(8, 1, 16, 16))
    path = tmp_path / "stage1.pt"
    torch.save({"arch": "cddpm", "hparams": STAGE1, "state_dict": model.state_dict()}, path)
    return path


def lesion_batch(n=8, seed=0):
    """(n, 3, 16, 16) slices: noise image with a bright square lesion, full brain mask, the square as label."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.zeros(n, 3, 16, 16)
    batch[:, 0] = 0.3 * torch.rand(n, 16, 16, generator=g)
    batch[:, 1] = 1
    for i in range(n):
        r, c = torch.randint(0, 10, (2,), generator=g).tolist()
        batch[i, 0, r : r + 5, c : c + 5] = 0.9
        batch[i, 2, r : r + 5, c : c + 5] = 1
    return batch


@pytest.mark.parametrize("siamese", [False, True])
def test_segmentation_unet_shapes(siamese):
    net = SegmentationUnet([8, 16, 32], groups=4, siamese=siamese)
    x = torch.rand(2, 1, 16, 24)
    out = net(x, x if siamese else None)
    assert out.shape == (2, 1, 16, 24)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.rand(2, 1, 18, 24), x)
    if siamese:
        with pytest.raises(ValueError, match="residual"):
            net(x)
        # the shared encoder: the same weights encode both inputs (no second encoder)
        assert sum(p.numel() for p in net.down.parameters()) == sum(
            p.numel() for p in SegmentationUnet([8, 16, 32], groups=4).down.parameters())


def test_groups_must_divide_widths():
    with pytest.raises(ValueError, match="groups"):
        SegmentationUnet([6, 16], groups=4)


@pytest.mark.parametrize("residual", [False, True])
def test_stage_two_outputs(stage1_ckpt, residual):
    model = build("sadm", stage1_arch="cddpm", stage1_hparams=STAGE1, stage1_checkpoint=str(stage1_ckpt),
                  channels=[4, 8, 16], groups=4, residual=residual, synthetic=False,
                  noise_level=[250, 500, 750]).eval()
    x = torch.rand(3, 1, 16, 16)
    recons, pred = model.reconstruct_and_map(x, x > 0, samples=2, generator=torch.Generator().manual_seed(1))
    assert recons.shape == (2, 3, 1, 16, 16) and pred.shape == (3, 1, 16, 16)
    assert float(pred.min()) >= 0 and float(pred.max()) <= 1
    # the Stage I reconstruction is the Stage I model's own ENS reconstruction with the same noise
    own = build("cddpm", **STAGE1)
    own.load_state_dict(torch.load(stage1_ckpt, weights_only=False)["state_dict"])
    ref = own.eval().reconstruct(x, noise_level=[250, 500, 750], samples=2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(recons, ref, rtol=0, atol=0)


@pytest.mark.parametrize("residual", [False, True])
def test_loss_decreases_on_real_labels(stage1_ckpt, residual):
    torch.manual_seed(0)
    model = build("sadm", stage1_arch="cddpm", stage1_hparams=STAGE1, stage1_checkpoint=str(stage1_ckpt),
                  channels=[8, 16], groups=4, residual=residual, synthetic=False, noise_level=500)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = lesion_batch(4)
    losses = []
    for _ in range(15):
        loss = model.loss(batch, torch.Generator().manual_seed(2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_batch_layout_is_checked(stage1_ckpt):
    model = build("sadm", stage1_arch="cddpm", stage1_hparams=STAGE1, channels=[4, 8], groups=4, synthetic=False)
    with pytest.raises(ValueError, match="Stage II batches"):
        model.loss(torch.rand(2, 1, 16, 16))


def test_stage1_weights_stay_bit_identical_through_training(tmp_path, stage1_ckpt):
    """fit() on Stage II: the frozen Stage I parameters *and buffers* (batch-norm statistics) are unchanged."""
    vols = np.stack([lesion_batch(2, seed=s).numpy() for s in range(2)])  # (N=2, D=2, 3, H, W)
    spec = stage1_spec(stage1_ckpt, [250, 500])
    hparams = stage2_hparams({"channels": [4, 8], "groups": 4, "residual": True}, spec, "labels", stage1_ckpt)
    out = tmp_path / "model.pt"
    result = fit("sadm", hparams, vols, vols[:1], TrainSettings(max_steps=3, batch_size=2, lr=1e-2, val_every=3,
                                                                 amp=False),
                 out_model=out, out_log=tmp_path / "log.tsv", workdir=tmp_path / "work", progress=False)
    assert result["status"] == "done"
    before = torch.load(stage1_ckpt, weights_only=False)["state_dict"]
    after = torch.load(out, weights_only=False)["state_dict"]
    for key, value in before.items():
        assert torch.equal(after[f"stage1.{key}"], value), key
    unet_keys = [k for k in after if k.startswith("unet.")]
    assert unet_keys
    # the rebuilt model needs no Stage I file (its state dict holds the frozen weights)
    stage1_ckpt.unlink()
    model = load_model(out, "cpu")
    assert model.noise_level == [250, 500] and model.residual


def test_stage2_volumes_channels():
    pack = {"subjects": np.array(["a", "b"]), "images": np.random.rand(2, 3, 4, 4).astype(np.float16),
            "masks": np.ones((2, 3, 4, 4), np.uint8), "segs": np.zeros((2, 3, 4, 4), np.uint8)}
    pack["segs"][1, 1, 2, 2] = 1
    vols = stage2_volumes(pack, ["b"], labels=True)
    assert vols.shape == (1, 3, 3, 4, 4)
    np.testing.assert_array_equal(vols[0, :, 0], pack["images"][1])
    assert vols[0, 1, 2, 2, 2] == 1 and vols[0, :, 2].sum() == 1
    assert stage2_volumes(pack, ["b"], labels=False)[..., 2, :, :].sum() == 0


def test_synthetic_training_pairs_are_draem_anomalies_inside_the_brain(stage1_ckpt):
    model = build("sadm", stage1_arch="cddpm", stage1_hparams=STAGE1, channels=[4, 8], groups=4, synthetic=True)
    batch = lesion_batch(6)
    batch[:, 1] = 0
    batch[:, 1, 2:14, 2:14] = 1  # brain mask
    batch[:, 2] = 0
    x1, y1 = model.training_pair(batch, torch.Generator().manual_seed(3))
    x2, y2 = model.training_pair(batch, torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)  # seeded
    assert y1.sum() > 0 and float(y1[:, 0][batch[:, 1] == 0].abs().sum()) == 0  # anomalies inside the brain only
    outside = (y1[:, 0] == 0)
    assert torch.equal(x1[:, 0][outside], batch[:, 0][outside])  # the image changes only inside the anomaly
    loss = model.loss(batch, torch.Generator().manual_seed(3))
    assert loss.ndim == 0 and torch.isfinite(loss)

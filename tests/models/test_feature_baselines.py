"""FAE, RD and EDC: shapes, training signal, map shape / range, determinism, the "not configured" path."""

import numpy as np
import pytest
import torch

from brainuad.models import build
from brainuad.models.backbones import BackboneNotConfigured, ResNetFeatures
from brainuad.models.encoder import ResNetEncoder
from brainuad.models.feature_autoencoder import feature_ssim, ssim_window
from brainuad.models.reverse_distillation import cosine_distance_map, global_cosine_loss

SSL = {"kind": "ssl", "channels": [8, 16, 32], "blocks": [1, 1, 1]}
SMALL = {"fae": dict(hidden_dims=[16, 32]), "rd": dict(decoder_blocks=[1, 1, 1]),
         "edc": dict(decoder_blocks=[1, 1, 1], encoder_lr=1e-4)}
#: upper bound of each model's map: 1 - SSIM (FAE) or a sum of three cosine distances (RD, EDC)
MAP_MAX = {"fae": 2.0, "rd": 6.0, "edc": 6.0}


@pytest.fixture(scope="module")
def encoder_ckpt(tmp_path_factory):
    """An SSL checkpoint as the pretrain_encoder stage writes it."""
    torch.manual_seed(5)
    hp = {"in_channels": 1, "channels": [8, 16, 32], "blocks": [1, 1, 1], "norm": "batch"}
    path = tmp_path_factory.mktemp("ssl") / "encoder.pt"
    torch.save({"encoder_hparams": hp, "encoder_state_dict": ResNetEncoder(**hp).state_dict()}, path)
    return str(path)


def _model(name, ckpt, seed=0, **kw):
    torch.manual_seed(seed)
    return build(name, backbone=SSL, image_size=(16, 16), pretrained_encoder=ckpt, **{**SMALL[name], **kw})


def _batch(seed=1, n=4, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g)


@pytest.mark.parametrize("name", ["rd", "edc"])
def test_encoder_decoder_feature_shapes(name, encoder_ckpt):
    model = _model(name, encoder_ckpt)
    enc, dec = model.features(_batch())
    assert [tuple(f.shape) for f in enc] == [(4, 8, 16, 16), (4, 16, 8, 8), (4, 32, 4, 4)]
    assert [f.shape for f in dec] == [f.shape for f in enc]
    assert model.encoder_hparams({"backbone": SSL}) == {"in_channels": 1, "channels": [8, 16, 32],
                                                        "blocks": [1, 1, 1], "norm": "batch"}


def test_fae_feature_shapes(encoder_ckpt):
    model = _model("fae", encoder_ckpt)
    feats = model.extract(_batch())
    assert feats.shape == (4, 8 + 16 + 32, 4, 4)  # all maps at a quarter of 16 x 16
    assert model.reconstruct_features(feats).shape == feats.shape


@pytest.mark.parametrize("name", ["fae", "rd", "edc"])
def test_loss_decreases_on_a_tiny_batch(name, encoder_ckpt):
    model = _model(name, encoder_ckpt).train()
    params = model.param_groups(1e-3) if hasattr(model, "param_groups") else model.parameters()
    opt = torch.optim.Adam(params, lr=1e-3)
    x = _batch()
    losses = []
    for _ in range(8):
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.95 * losses[0], losses


@pytest.mark.parametrize("name", ["fae", "rd", "edc"])
def test_map_shape_range_and_mask(name, encoder_ckpt):
    model = _model(name, encoder_ckpt).eval()
    x = _batch()
    mask = torch.zeros_like(x, dtype=torch.bool)
    mask[..., 2:14, 2:14] = True
    amap = model.anomaly_map(x, mask)
    assert amap.shape == x.shape and amap.dtype == x.dtype
    assert float(amap.min()) >= 0.0 and float(amap.max()) <= MAP_MAX[name]
    assert float(amap[..., 2:14, 2:14].min()) > 0.0
    assert torch.all(amap[~mask] == 0)


@pytest.mark.parametrize("name", ["fae", "rd", "edc"])
def test_deterministic_under_a_seed(name, encoder_ckpt):
    x, mask = _batch(), torch.ones(4, 1, 16, 16, dtype=torch.bool)
    a, b, c = (_model(name, encoder_ckpt, seed=s).eval() for s in (3, 3, 4))
    torch.testing.assert_close(a.anomaly_map(x, mask), b.anomaly_map(x, mask), rtol=0, atol=0)
    assert not torch.equal(a.anomaly_map(x, mask), c.anomaly_map(x, mask))
    assert a.train().loss(x).item() == b.train().loss(x).item()


@pytest.mark.parametrize("name", ["fae", "rd", "edc"])
def test_not_configured_backbone(name, encoder_ckpt, tmp_path):
    with pytest.raises(BackboneNotConfigured, match="not configured"):
        build(name, backbone={"kind": "imagenet", "arch": "resnet18", "weights": None}, image_size=(64, 64))
    with pytest.raises(BackboneNotConfigured, match="does not exist"):
        build(name, backbone={"kind": "imagenet", "arch": "resnet18", "weights": str(tmp_path / "none.pth")},
              image_size=(64, 64))
    # an ssl backbone without the pre-training stage: buildable (to restore a checkpoint), not usable
    bare = build(name, backbone=SSL, image_size=(16, 16), **SMALL[name])
    with pytest.raises(BackboneNotConfigured, match="pretrain"):
        bare.loss(_batch())
    with pytest.raises(BackboneNotConfigured):
        bare.anomaly_map(_batch(), torch.ones(4, 1, 16, 16, dtype=torch.bool))
    trained = _model(name, encoder_ckpt).eval()
    bare.load_state_dict(trained.state_dict())  # restoring the model's own checkpoint
    x, mask = _batch(), torch.ones(4, 1, 16, 16, dtype=torch.bool)
    torch.testing.assert_close(bare.eval().anomaly_map(x, mask), trained.anomaly_map(x, mask))


def test_fae_default_backbone_is_an_unconfigured_imagenet_resnet18():
    with pytest.raises(BackboneNotConfigured, match="ImageNet resnet18"):
        build("fae", image_size=(64, 64))


def test_imagenet_backbone_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(ResNetFeatures("resnet18", layers=(1, 2, 3, 4)).state_dict(), path)
    spec = {"kind": "imagenet", "arch": "resnet18", "weights": str(path)}
    rd = build("rd", backbone=spec, image_size=(64, 64), decoder_blocks=[1, 1, 1])
    enc, dec = rd.features(torch.rand(2, 1, 64, 64))
    assert [tuple(f.shape[1:]) for f in enc] == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    assert [f.shape for f in dec] == [f.shape for f in enc]
    fae = build("fae", backbone={**spec, "input_norm": "centered"}, image_size=(64, 64), hidden_dims=[32, 32])
    assert fae.extract(torch.rand(2, 1, 64, 64)).shape == (2, 64 + 128 + 256, 16, 16)
    with pytest.raises(ValueError, match="pretrained_encoder is only used by an 'ssl' backbone"):
        build("rd", backbone=spec, image_size=(64, 64), pretrained_encoder=str(path))


def test_rd_teacher_is_frozen_and_edc_encoder_learns_at_its_own_rate(encoder_ckpt):
    x = _batch()
    for name, moves in (("rd", False), ("edc", True)):
        model = _model(name, encoder_ckpt).train()
        before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        params = model.param_groups(1e-3) if hasattr(model, "param_groups") else model.parameters()
        opt = torch.optim.Adam(params, lr=1e-3)
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        after = model.backbone.state_dict()
        changed = any(not torch.equal(before[k], after[k]) for k in before)
        assert changed == moves, name
        # BatchNorm statistics of the backbone are never updated (kept in eval mode while training)
        assert all(torch.equal(before[k], after[k]) for k in before if "running" in k)
    groups = _model("edc", encoder_ckpt).param_groups(5e-5)
    assert [g["lr"] for g in groups] == [1e-4, 5e-5]


def test_global_cosine_loss_and_distance_map_by_hand():
    f = [torch.tensor([[[[1.0]], [[0.0]]]]), torch.tensor([[[[3.0, 0.0]], [[4.0, 1.0]]]])]  # (1, 2, 1, 1), (1, 2, 1, 2)
    d = [torch.tensor([[[[0.0]], [[2.0]]]]), torch.tensor([[[[3.0, 0.0]], [[4.0, 1.0]]]])]
    # scale 1: orthogonal -> 1; scale 2: identical -> 0
    assert global_cosine_loss(f, d, stop_grad=True).item() == pytest.approx(1.0)
    amap = cosine_distance_map(f, [d[0], -d[1]], (3, 4), smooth_sigma=0)
    # scale 1 everywhere 1 (orthogonal), scale 2: opposite vectors -> 2
    torch.testing.assert_close(amap, torch.full((1, 1, 3, 4), 3.0))


def test_feature_ssim_of_constant_maps():
    a, b = torch.full((1, 2, 9, 9), 0.6), torch.full((1, 2, 9, 9), 0.2)
    s = feature_ssim(a, b, ssim_window(5, 1.5))
    c1 = 0.01**2
    want = (2 * 0.6 * 0.2 + c1) / (0.6**2 + 0.2**2 + c1)  # no variance: the structure term is C2 / C2 = 1
    torch.testing.assert_close(s[..., 2:7, 2:7], torch.full((1, 2, 5, 5), want), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feature_ssim(a, a, ssim_window(5, 1.5)), torch.ones_like(a), atol=1e-5, rtol=1e-5)

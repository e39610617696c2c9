"""Feature backbones: torchvision-compatible layouts, the "not configured" path, SSL checkpoints."""

import pytest
import torch

from brainuad.models.backbones import (BackboneNotConfigured, ResNetFeatures, VGG16Features, build_backbone,
                                       configured, describe, load_backbone, ssl_encoder_hparams)
from brainuad.models.encoder import ResNetEncoder


def _n_params(net):
    return sum(p.numel() for p in net.parameters())


# torchvision's published parameter counts minus the 1000-class fc layer (resnet18: 11,689,512 - 513,000;
# resnet50: 25,557,032 - 2,049,000; wide_resnet50_2: 68,883,240 - 2,049,000; VGG16 features: 14,714,688)
@pytest.mark.parametrize("arch,count", [("resnet18", 11_176_512), ("resnet50", 23_508_032),
                                        ("wide_resnet50_2", 66_834_240)])
def test_resnet_parameter_counts_match_torchvision(arch, count):
    assert _n_params(ResNetFeatures(arch, layers=(1, 2, 3, 4))) == count


def test_vgg16_parameter_count_matches_torchvision():
    assert _n_params(VGG16Features()) == 14_714_688


def test_resnet18_uses_torchvision_names():
    sd = ResNetFeatures("resnet18", layers=(1, 2, 3, 4)).state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer1.0.conv1.weight"].shape == (64, 64, 3, 3)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer2.0.downsample.1.running_mean"].shape == (128,)
    assert sd["layer4.1.bn2.running_var"].shape == (512,)
    assert "layer1.0.downsample.0.weight" not in sd


def test_wide_resnet_bottleneck_widths():
    sd = ResNetFeatures("wide_resnet50_2", layers=(1,)).state_dict()
    assert sd["layer1.0.conv2.weight"].shape == (128, 128, 3, 3)  # width 64 * 2
    assert sd["layer1.0.conv3.weight"].shape == (256, 128, 1, 1)


@pytest.mark.parametrize("spec,channels,strides", [
    ({"kind": "imagenet", "arch": "resnet18"}, [64, 128, 256], [4, 8, 16]),
    ({"kind": "imagenet", "arch": "wide_resnet50_2", "layers": [2, 3]}, [512, 1024], [8, 16]),
    ({"kind": "imagenet", "arch": "vgg16", "layers": [1, 3]}, [64, 256], [1, 4]),
    ({"kind": "ssl", "channels": [8, 16, 32], "blocks": [1, 1, 1], "layers": [1, 2, 3]}, [8, 16, 32], [1, 2, 4]),
])
def test_feature_shapes(spec, channels, strides):
    net = build_backbone(spec, in_channels=1).eval()
    feats = net(torch.rand(2, 1, 64, 64))
    assert [f.shape[1] for f in feats] == channels == net.out_channels
    assert [64 // f.shape[-1] for f in feats] == strides == net.strides
    assert all(f.shape[0] == 2 for f in feats)


def test_imagenet_input_scaling():
    net = build_backbone({"kind": "imagenet", "arch": "resnet18", "layers": [1]})
    x = torch.full((1, 1, 4, 4), 0.5)
    got = net.prepare(x)[0, :, 0, 0]
    want = torch.tensor([(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225])
    torch.testing.assert_close(got, want)
    centred = build_backbone({"kind": "imagenet", "arch": "resnet18", "layers": [1], "input_norm": "centered"})
    torch.testing.assert_close(centred.prepare(torch.full((1, 1, 2, 2), 0.25)), torch.full((1, 3, 2, 2), -0.5))


def test_not_configured_without_weights(tmp_path):
    spec = {"kind": "imagenet", "arch": "resnet18", "weights": None}
    assert not configured(spec)
    with pytest.raises(BackboneNotConfigured, match="not configured"):
        load_backbone(spec, in_channels=1, device="cpu")
    missing = {"kind": "imagenet", "arch": "resnet18", "weights": str(tmp_path / "r18.pth")}
    assert not configured(missing)
    with pytest.raises(BackboneNotConfigured, match="r18.pth does not exist"):
        load_backbone(missing, in_channels=1, device="cpu")
    assert isinstance(BackboneNotConfigured(spec, "x"), FileNotFoundError)


def test_loads_torchvision_style_file_and_ignores_fc(tmp_path):
    torch.manual_seed(0)
    src = ResNetFeatures("resnet18", layers=(1, 2, 3, 4))
    state = dict(src.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    spec = {"kind": "imagenet", "arch": "resnet18", "weights": str(path), "layers": [1, 2, 3, 4]}
    assert configured(spec)
    net = load_backbone(spec, in_channels=1, device="cpu")
    assert not net.training
    x = torch.rand(2, 1, 32, 32)
    for a, b in zip(net(x), src.eval()(x)):
        torch.testing.assert_close(a, b)
    assert "resnet18.pth" in describe(spec)


def test_wrong_file_names_the_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(ResNetFeatures("resnet34", layers=(1,)).state_dict(), path)
    with pytest.raises(ValueError, match="other.pth: not a ImageNet resnet18"):
        load_backbone({"kind": "imagenet", "arch": "resnet18", "weights": str(path)}, in_channels=1)
    junk = tmp_path / "junk.pth"
    junk.write_text("not torch")
    with pytest.raises(ValueError, match="junk.pth: cannot be read"):
        load_backbone({"kind": "imagenet", "arch": "resnet18", "weights": str(junk)}, in_channels=1)


def test_ssl_checkpoint_gives_the_encoder_stages(tmp_path):
    spec = {"kind": "ssl", "channels": [8, 16, 32], "blocks": [1, 1, 1], "norm": "group", "layers": [2, 3]}
    hp = ssl_encoder_hparams(spec)
    assert hp == {"in_channels": 1, "channels": [8, 16, 32], "blocks": [1, 1, 1], "norm": "group"}
    torch.manual_seed(1)
    enc = ResNetEncoder(**hp).eval()
    path = tmp_path / "encoder.pt"
    torch.save({"encoder_hparams": hp, "encoder_state_dict": enc.state_dict()}, path)
    net = load_backbone({**spec, "weights": str(path)}, in_channels=1)
    x = torch.rand(3, 1, 16, 16)
    h = enc.stem(x)
    stages = []
    for stage in enc.stages:
        h = stage(h)
        stages.append(h)
    feats = net(x)
    torch.testing.assert_close(feats[0], stages[1])
    torch.testing.assert_close(feats[1], stages[2])
    with pytest.raises(BackboneNotConfigured):
        load_backbone(spec, in_channels=1)


def test_bad_specs():
    with pytest.raises(ValueError, match="kind"):
        build_backbone({"kind": "download"})
    with pytest.raises(ValueError, match="arch"):
        build_backbone({"kind": "imagenet", "arch": "vit"})
    with pytest.raises(ValueError, match="unknown keys"):
        build_backbone({"kind": "imagenet", "arch": "resnet18", "pretrained": True})
    with pytest.raises(ValueError, match="layers"):
        build_backbone({"kind": "imagenet", "arch": "resnet18", "layers": [3, 1]})


def test_feature_distance_map_by_hand():
    from brainuad.models.backbones import feature_distance_map

    class Two(torch.nn.Module):  # one layer: the identity on 2 channels
        def forward(self, x):
            return [x]

    a = torch.zeros(1, 2, 2, 2)
    a[:, 0] = 1.0  # unit vector (1, 0) everywhere
    b = a.clone()
    b[:, :, 0, 0] = torch.tensor([0.0, 3.0])  # direction (0, 1) at one pixel
    d = feature_distance_map(Two(), a, b)
    want = torch.zeros(1, 1, 2, 2)
    want[0, 0, 0, 0] = 2.0  # |(1, 0) - (0, 1)|^2
    torch.testing.assert_close(d, want)
    w = feature_distance_map(Two(), a, b, weights=[torch.tensor([0.5, 0.25])])
    assert float(w[0, 0, 0, 0]) == pytest.approx(0.5 * 1 + 0.25 * 1)
    net = build_backbone({"kind": "imagenet", "arch": "vgg16", "layers": [1, 2]}).eval()
    x = torch.rand(2, 1, 16, 16)
    assert torch.all(feature_distance_map(net, x, x) == 0)
    assert feature_distance_map(net, x, torch.rand(2, 1, 16, 16)).shape == (2, 1, 16, 16)


def test_unused_resnet_stages_are_not_built_and_their_keys_are_ignored(tmp_path):
    full = ResNetFeatures("resnet18", layers=(1, 2, 3, 4))
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    net = load_backbone({"kind": "imagenet", "arch": "resnet18", "weights": str(path), "layers": [1, 2]})
    assert not any(k.startswith(("layer3.", "layer4.")) for k in net.state_dict())
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(net(x)[1], full.eval()(x)[1])

"""Fixtures shared by several test folders."""
import pytest
import torch

#: indices and (out, in) channels of VGG16's 13 convolutions in torchvision's ``features`` layout
VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_SHAPES = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256), (512, 256), (512, 512),
                (512, 512), (512, 512), (512, 512), (512, 512)]


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A VGG16 + LPIPS-calibration weights file in the lpips package layout, random weights (seed 0)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for i, (cout, cin) in zip(VGG16_CONVS, VGG16_SHAPES):
        state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(cout)
    for k, c in enumerate([64, 128, 256, 512, 512]):
        state[f"lin{k}.model.1.weight"] = torch.rand(1, c, 1, 1, generator=g)
    path = tmp_path_factory.mktemp("w") / "lpips_vgg.pth"
    torch.save(state, path)
    return path

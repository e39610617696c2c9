"""Fixtures shared by several test folders."""
import pytest

from brainuad.evaluation.lpips import write_random_weights


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A VGG16 + LPIPS-calibration weights file in the lpips package layout, random weights (seed 0)."""
    return write_random_weights(tmp_path_factory.mktemp("w") / "lpips_vgg.pth", seed=0)

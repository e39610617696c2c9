"""The qualitative figure: a fifth column with healthy-voxel histograms when reconstructions exist."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402
from PIL import Image  # noqa: E402

from brainuad.analysis.domain_shift import histogram_shift  # noqa: E402
from brainuad.reporting.figures import _histogram_panel, qualitative_figure  # noqa: E402


def _panel(hist=None, recon=True):
    rng = np.random.default_rng(0)
    image = rng.random((16, 16)).astype(np.float32)
    seg = np.zeros((16, 16), bool)
    seg[4:8, 4:8] = True
    return {"title": "t", "image": image, "seg": seg, "mask": np.ones((16, 16), bool), "map": image,
            "recon": image if recon else None, "binary": seg, "hist": hist}


def test_histogram_column_only_when_some_panel_has_one(tmp_path):
    x = np.linspace(0, 1, 1000)
    hist = histogram_shift(x, x ** 2, np.ones_like(x, bool), bins=10)
    qualitative_figure([_panel(), _panel(recon=False)], tmp_path / "four.png")
    qualitative_figure([_panel(hist), _panel(recon=False)], tmp_path / "five.png")
    w4, h4 = Image.open(tmp_path / "four.png").size
    w5, h5 = Image.open(tmp_path / "five.png").size
    assert h4 == h5
    assert abs(w5 / w4 - 5 / 4) < 0.02  # 2 inches per column


def test_histogram_panel_draws_the_given_densities():
    x = (np.arange(1000) + 0.5) / 1000  # uniform: density 1 in every bin
    hist = histogram_shift(x, np.full_like(x, 0.55), np.ones_like(x, bool), bins=10)
    fig, ax = plt.subplots()
    _histogram_panel(ax, hist)
    patches = [p for p in ax.patches if isinstance(p, StepPatch)]
    values = [p.get_data().values for p in patches]
    np.testing.assert_allclose(values[0], np.ones(10))
    np.testing.assert_allclose(values[1], np.eye(10)[5] * 10)  # all mass in bin [0.5, 0.6): density 10
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"KLD {np.log(10):.2f}"]  # H(uniform over 10 bins) - H(one bin) = log 10
    plt.close(fig)

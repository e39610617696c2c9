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


def test_training_curves_leave_out_the_inf_validation_of_a_first_gan_stage(tmp_path, monkeypatch):
    """Staged GAN models (f-AnoGAN, PHANES) log val_loss +inf before their selectable stage: not drawn."""
    import matplotlib.axes

    from brainuad.reporting.figures import training_curves

    log = tmp_path / "train_log.tsv"
    log.write_text("step\tloss\tval_loss\tseconds\n1\t-0.5\t\t0.1\n2\t0.3\tinf\t0.2\n3\t0.2\t0.25\t0.3\n4\t0.1\t0.2\t0.4\n")
    drawn = []
    real_plot = matplotlib.axes.Axes.plot

    def spy(self, x, y, *args, **kwargs):
        drawn.append((list(x), list(y), kwargs.get("label")))
        return real_plot(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    training_curves({"healthy/fanogan/default/fold-0": log}, tmp_path / "curves.png")
    val = [d for d in drawn if d[2] and d[2].endswith("(val)")]
    assert val == [([3, 4], [0.25, 0.2], "fold-0 (val)")]
    assert (tmp_path / "curves.png").stat().st_size > 0

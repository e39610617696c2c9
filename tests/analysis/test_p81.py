"""P8.1 analyses: slice-wise detection AUPRC (against scikit-learn on a hand-built case) and the cubic size fit."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from brainuad.analysis.p81 import lesion_size_fit, lesion_size_figure, slice_auprc, slice_scores


def test_slice_labels_and_l1_scores_by_hand():
    img = np.zeros((3, 2, 2))
    rec = np.zeros((3, 2, 2))
    rec[0] = 0.1                     # slice 0: l1 0.1
    rec[1, 0, 0] = 0.8               # slice 1: l1 0.8 / 4 = 0.2
    seg = np.zeros((3, 2, 2))
    seg[1, 1, 1] = 1                 # only slice 1 abnormal
    labels, scores = slice_scores([img], [rec], [seg])
    assert labels.tolist() == [False, True, False]
    assert np.allclose(scores, [0.1, 0.2, 0.0])
    mask = np.zeros((3, 2, 2))
    mask[1, 0] = 1                   # brain = the top row of slice 1; slices 0 and 2 have none
    _, masked = slice_scores([img], [rec], [seg], [mask])
    assert np.allclose(masked, [0.0, 0.4, 0.0])


def test_slice_auprc_pools_volumes_and_equals_sklearn():
    rng = np.random.default_rng(0)
    imgs, recs, segs = [], [], []
    for d in (5, 7):                 # two "pathology sets" with different slice counts
        img = rng.random((d, 4, 4))
        rec = img + rng.normal(0, 0.1, img.shape)
        seg = np.zeros_like(img)
        seg[1:3, 2, 2] = 1
        imgs.append(img), recs.append(rec), segs.append(seg)
    labels, scores = slice_scores(imgs, recs, segs)
    assert labels.sum() == 4 and len(labels) == 12
    expected = average_precision_score(labels, scores)
    assert slice_auprc(labels, scores) == pytest.approx(expected)
    # hand-computed: scores ranked abnormal, normal, abnormal -> AP = (1/1 + 2/3) / 2
    assert slice_auprc(np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(slice_auprc(np.zeros(3, bool), np.arange(3.0)))


def test_lesion_size_fit_recovers_a_known_cubic(tmp_path):
    x = np.linspace(10, 5000, 40)
    coeffs = np.array([2e-11, -1e-7, 2e-4, 0.05])
    y = np.polyval(coeffs, x)
    y[3] = np.nan                    # dropped
    assert np.allclose(lesion_size_fit(x, y), coeffs, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="more than 3 finite points"):
        lesion_size_fit([1, 2, 3], [0.1, 0.2, 0.3])
    lesion_size_figure({"2D": (x, y), "3D": (x, y + 0.1)}, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_run_p81_analysis_pools_the_test_slices_of_every_dataset(tmp_path):
    import pandas as pd

    from brainuad.analysis.p81 import run_p81_analysis

    rng = np.random.default_rng(1)
    entries, all_l, all_s = [], [], []
    for name in ("a", "b"):
        imgs = rng.random((3, 4, 6, 6)).astype(np.float16)
        segs = np.zeros((3, 4, 6, 6), np.uint8)
        segs[:, 1, 2, 2] = 1
        masks = np.ones_like(segs)
        subjects = np.array([f"{name}{i}" for i in range(3)])
        np.savez(tmp_path / f"{name}_vol.npz", images=imgs, masks=masks, segs=segs, subjects=subjects)
        recons = (imgs.astype(float) + rng.normal(0, 0.2, imgs.shape))[None].astype(np.float16)
        # recon order: val subject a2 first, then the test subjects a0, a1
        order = [2, 0, 1]
        np.savez(tmp_path / f"{name}_rec.npz", recons=recons[:, order], subjects=subjects[order],
                 split=np.array(["val", "test", "test"]))
        pd.DataFrame({"subject": subjects[order], "split": ["val", "test", "test"], "dice": [0.9, 0.2, 0.4],
                      "lesion_voxels": [1, 10, 20], "l1_healthy": [9.0, 0.01, 0.03] if name == "a" else [9.0, 0.02, np.nan],
                      "l1_lesion": [9.0, 0.2, 0.4] if name == "a" else [9.0, 0.3, 0.5]}
                     ).to_csv(tmp_path / f"{name}.tsv", sep="\t", index=False)
        entries.append({"label": "M", "dataset": name, "recon": tmp_path / f"{name}_rec.npz",
                        "volumes": tmp_path / f"{name}_vol.npz", "metrics": tmp_path / f"{name}.tsv"})
        lab, sc = slice_scores(imgs[[0, 1]], recons[0, [0, 1]], segs[[0, 1]], masks[[0, 1]])
        all_l.append(lab), all_s.append(sc)
    run_p81_analysis(entries, table=tmp_path / "t.tsv", slicewise_png=tmp_path / "s.png", size_png=tmp_path / "z.png",
                     l1_png=tmp_path / "l1.png")
    out = pd.read_csv(tmp_path / "t.tsv", sep="\t")
    # Figure 4.1 numbers: the test subjects of both datasets (the val subject's 9.0 left out, NaN skipped)
    assert out["l1_healthy"].iloc[0] == pytest.approx((0.01 + 0.03 + 0.02) / 3)
    assert out["l1_lesion"].iloc[0] == pytest.approx((0.2 + 0.4 + 0.3 + 0.5) / 4)
    assert (tmp_path / "l1.png").stat().st_size > 1000
    assert out["slices"].tolist() == [16] and out["abnormal_slices"].tolist() == [4]
    expected = average_precision_score(np.concatenate(all_l), np.concatenate(all_s))
    assert out["slice_auprc"].iloc[0] == pytest.approx(expected)
    assert (tmp_path / "s.png").exists() and (tmp_path / "z.png").exists()


def test_lesion_size_figure_says_when_a_series_is_too_small_for_the_fit(tmp_path, monkeypatch):
    """3 subjects (the demo): points only, 'no fit' in the legend and a note on the axes; 5 subjects: a fit."""
    import matplotlib.axes

    texts, labels, lines = [], [], []
    monkeypatch.setattr(matplotlib.axes.Axes, "text", lambda self, x, y, s, **kw: texts.append(s))
    real_scatter, real_plot = matplotlib.axes.Axes.scatter, matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter",
                        lambda self, *a, **kw: labels.append(kw.get("label")) or real_scatter(self, *a, **kw))
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, *a, **kw: lines.append(a) or real_plot(self, *a, **kw))
    lesion_size_figure({"2D": ([1, 2, 3], [0.1, 0.2, 0.3]), "3D": ([1, 2, 3, 4, 5], [0.1, 0.4, 0.2, 0.5, 0.3])},
                       tmp_path / "f.png")
    assert labels == ["2D (n = 3: no fit)", "3D"] and len(lines) == 1
    assert len(texts) == 1 and "1 of 2 series" in texts[0] and "degree-3" in texts[0]

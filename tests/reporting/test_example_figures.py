import json
from pathlib import Path

import numpy as np
import pytest

from brainuad.reporting.example_figures import (
    final_map,
    qualitative_panels,
    split_positions,
    write_mhd_figure,
    write_qualitative_figure,
)

OPTIONS = {"median": 0, "erode": 0, "min_component": 2}
DATASETS = {"h": {"role": "healthy"}, "t": {"role": "pathology", "trainset": "h", "label": "T"}}


def test_split_positions():
    assert split_positions(["val", "test", "test", "val"]) == [1, 2]
    assert split_positions(["val", "test"], "val") == [0]


def test_final_map_by_hand():
    amap = np.zeros((1, 3, 4), np.float16)
    amap[0, 0, :3] = 0.8  # a 3-voxel component
    amap[0, 2, 3] = 0.9  # a 1-voxel component, below min_component
    mask = np.ones((1, 3, 4), np.uint8)
    mask[0, 0, 0] = 0
    pp, binary = final_map(amap, mask, 0.5, OPTIONS)
    assert pp.dtype == np.float32 and pp[0, 0, 0] == 0 and pp[0, 0, 1] == pytest.approx(0.8, abs=1e-3)
    expected = np.zeros((1, 3, 4), bool)
    expected[0, 0, 1:3] = True
    np.testing.assert_array_equal(binary, expected)


def _results(tmp_path, samples=2):
    """Pack of 3 subjects (lesion sizes 1, 6, 4 voxels) and the stored results of model ae, fold 0."""
    masks = np.zeros((3, 4, 6, 6), np.uint8)
    masks[:, :, 1:5, 1:5] = 1
    segs = np.zeros_like(masks)
    segs[0, 1, 2, 2] = 1
    segs[1, 2, 2:4, 2:5] = 1  # largest lesion, all on slice 2
    segs[2, 1, 2:4, 2:4] = 1
    images = np.full(masks.shape, 0.5, np.float16) * masks
    Path("results/data/t").mkdir(parents=True)
    np.savez("results/data/t/volumes.npz", images=images, masks=masks, segs=segs, subjects=np.array(["a", "b", "c"]))
    stored = dict(subjects=np.array(["c", "b", "a"]), split=np.array(["test", "val", "test"]))  # b is not a test subject
    base = "h/ae/default/fold-0/t"
    for scoring in ("l1", "m", "d", "f"):
        Path(f"results/scores/{base}").mkdir(parents=True, exist_ok=True)
        np.savez(f"results/scores/{base}/{scoring}.npz", maps=segs[[2, 1, 0]].astype(np.float16), **stored)
        Path(f"results/eval/{base}/{scoring}").mkdir(parents=True)
        Path(f"results/eval/{base}/{scoring}/threshold.json").write_text(json.dumps({"threshold": 0.5}))
    recons = np.stack([np.full((3, 4, 6, 6), v, np.float16) for v in (0.2, 0.4, 0.9)[:samples]])
    Path("results/recon/h/ae/default/fold-0").mkdir(parents=True)
    np.savez(f"results/recon/{base}.npz", recons=recons, **stored)


def test_qualitative_panels_pick_the_largest_test_lesion(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _results(tmp_path)
    table = {"datasets": ["t"], "rows": [{"model": "ae"}]}
    (panel,) = qualitative_panels(table, 0, options=OPTIONS, models={"ae": {"label": "AE"}}, datasets=DATASETS,
                                  run="default", histogram_bins=10)
    assert panel["title"] == "T\nAE · c z=1"  # c (4 voxels) beats a (1 voxel); b is a validation subject
    np.testing.assert_allclose(panel["recon"], 0.3, atol=1e-3)  # mean of the samples 0.2 and 0.4
    assert panel["binary"].sum() == 4 and panel["hist"] is not None
    assert write_qualitative_figure(tmp_path / "q.png", table, 0, options=OPTIONS, models={"ae": {}},
                                    datasets=DATASETS, run="default", histogram_bins=10) == 1
    assert (tmp_path / "q.png").stat().st_size > 0


def test_mhd_figure_subject_slice_pixel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _results(tmp_path)
    base = "results/scores/h/ae/default/fold-0/t"
    kw = dict(recon="results/recon/h/ae/default/fold-0/t.npz", volumes="results/data/t/volumes.npz",
              threshold="results/eval/h/ae/default/fold-0/t/f/threshold.json",
              maps={k: f"{base}/{s}.npz" for k, s in (("mean", "m"), ("diag", "d"), ("full", "f"))})
    # c: lesion rows 2-3, columns 2-3 of slice 1 -> centre (2.5, 2.5), rounded half to even: (2, 2)
    assert write_mhd_figure(tmp_path / "m.png", {"model": "ae", "dataset": "t"}, OPTIONS, **kw) == ("c", 1, (2, 2))


def test_mhd_figure_needs_several_samples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _results(tmp_path, samples=1)
    with pytest.raises(ValueError, match="several reconstructions"):
        write_mhd_figure(tmp_path / "m.png", {"model": "ae", "dataset": "t"}, OPTIONS,
                         recon="results/recon/h/ae/default/fold-0/t.npz", volumes="", threshold="", maps={})

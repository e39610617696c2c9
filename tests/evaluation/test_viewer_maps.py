"""brainuad.evaluation.viewer_maps on a hand-built evaluation: two subjects, a known map and threshold."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainuad.data.pack import dhw_to_ras, ras_to_dhw
from brainuad.errors import InputDataError
from brainuad.evaluation.viewer_maps import export_viewer_maps

SHAPE = (6, 10, 8)  # (D, H, W)
AFFINE = np.array([[3.0, 0, 0, -12.0], [0, 3.0, 0, -15.0], [0, 0, 3.0, -9.0], [0, 0, 0, 1]])
OPTIONS = {"median": 0, "erode": 0, "erode_mode": "2d", "min_component": 3}


@pytest.fixture
def evaluation(tmp_path):
    maps = np.zeros((3,) + SHAPE, np.float32)
    maps[0, 2:4, 3:5, 3:5] = 0.9  # 8 voxels above the threshold: kept
    maps[0, 0, 0, 0] = 0.8  # one voxel above: removed by the component rule (fewer than 3)
    maps[1, 1:3, 1:3, 1:3] = 0.4  # below the threshold
    maps[2] = 0.7  # validation subject: not exported
    masks = np.ones((3,) + SHAPE, np.uint8)
    np.savez(tmp_path / "scores.npz", maps=maps, subjects=np.array(["a", "b", "v"]), split=np.array(["test", "test", "val"]))
    np.savez(tmp_path / "volumes.npz", images=maps.astype(np.float16), masks=masks, segs=masks * 0,
             subjects=np.array(["a", "b", "v"]), affine=AFFINE)
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.5}))
    raw = {}
    for s in "abv":  # raw scans on the pre-processed grid: the identity registration must give the same voxels
        raw[s] = tmp_path / f"{s}_raw.nii.gz"
        nib.save(nib.Nifti1Image(np.ones(dhw_to_ras(maps[0]).shape, np.float32), AFFINE), str(raw[s]))
        (tmp_path / f"{s}_qc.json").write_text(json.dumps({"registration_transform": []}))
    return tmp_path, maps, raw


def test_maps_and_segmentations_on_both_grids(evaluation):
    folder, maps, raw = evaluation
    rows = export_viewer_maps(folder / "out", scores=folder / "scores.npz", volumes=folder / "volumes.npz",
                              threshold=folder / "threshold.json", qc_records={s: folder / f"{s}_qc.json" for s in "abv"},
                              raw_images=raw, options=OPTIONS)
    assert [r["subject"] for r in rows] == ["a", "b"] and [r["predicted_voxels"] for r in rows] == [8, 0]
    img = nib.load(str(folder / "out" / "a_map.nii.gz"))
    np.testing.assert_allclose(img.affine, AFFINE)
    np.testing.assert_allclose(ras_to_dhw(img.get_fdata()), maps[0])  # median 0 / erode 0: the raw map
    seg = ras_to_dhw(np.asarray(nib.load(str(folder / "out" / "a_seg.nii.gz")).dataobj))
    expected = np.zeros(SHAPE, bool)
    expected[2:4, 3:5, 3:5] = True
    np.testing.assert_array_equal(seg > 0, expected)
    seg_raw = ras_to_dhw(np.asarray(nib.load(str(folder / "out" / "a_seg_raw.nii.gz")).dataobj))
    np.testing.assert_array_equal(seg_raw > 0, expected)
    map_raw = ras_to_dhw(nib.load(str(folder / "out" / "a_map_raw.nii.gz")).get_fdata())
    np.testing.assert_allclose(map_raw, maps[0], atol=1e-5)
    index = pd.read_csv(folder / "out" / "index.tsv", sep="\t")
    assert list(index["subject"]) == ["a", "b"] and list(index["predicted_voxels_raw"]) == [8, 0]


def test_healthy_threshold_and_missing_record_are_clear_errors(evaluation):
    folder, _, raw = evaluation
    (folder / "healthy.json").write_text(json.dumps({"threshold": float("nan"), "fpr_thresholds": {}}))
    common = dict(scores=folder / "scores.npz", volumes=folder / "volumes.npz", raw_images=raw, options=OPTIONS)
    with pytest.raises(InputDataError, match="pathology"):
        export_viewer_maps(folder / "o1", threshold=folder / "healthy.json", qc_records={}, **common)
    with pytest.raises(InputDataError, match="no raw scan or QC record"):
        export_viewer_maps(folder / "o2", threshold=folder / "threshold.json", qc_records={}, **common)
    rows = export_viewer_maps(folder / "o3", threshold=folder / "threshold.json", qc_records={}, raw_space=False,
                              **common)
    assert "map_raw" not in rows[0] and not list((folder / "o3").glob("*_raw.nii.gz"))

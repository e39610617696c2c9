"""Post-processing steps against hand-counted cases."""

import numpy as np
import pytest

from brainuad.evaluation.postprocess import binarize, erode_mask, postprocess, remove_small_components


def test_median_removes_isolated_hot_voxel():
    amap = np.zeros((15, 15, 15), np.float32)
    amap[7, 7, 7] = 1.0
    out = postprocess(amap, None, median=5, erode=0)
    assert out.max() == 0.0


def test_median_keeps_core_of_5x5x5_block():
    # Block at 5..9 along each axis, far from the borders. Per axis, a block position i sees
    # 3, 4, 5, 4, 3 block voxels in its 5-window; a voxel stays hot when the product >= 63
    # (the median of 125). Hand count: 1 (5,5,5) + 6 (4,5,5) + 6 (3,5,5) + 12 (4,4,5) + 8 (4,4,4) = 33.
    amap = np.zeros((15, 15, 15), np.float32)
    amap[5:10, 5:10, 5:10] = 1.0
    out = postprocess(amap, None, median=5, erode=0)
    assert out[7, 7, 7] == 1.0
    assert out[5, 5, 5] == 0.0  # corner: 3*3*3 = 27 hot voxels in its window
    assert out[5, 7, 7] == 1.0  # face centre: 3*5*5 = 75
    assert out[5, 6, 7] == 0.0  # 3*4*5 = 60 < 63
    assert np.count_nonzero(out) == 33
    assert np.count_nonzero(out[:5]) == 0 and np.count_nonzero(out[10:]) == 0


def test_median_disabled():
    amap = np.zeros((7, 7, 7), np.float32)
    amap[3, 3, 3] = 1.0
    for off in (0, None):
        np.testing.assert_array_equal(postprocess(amap, None, median=off, erode=0), amap)


def test_erosion_2d_per_slice_10x10_square_leaves_4x4():
    mask = np.zeros((5, 20, 20), bool)
    mask[:, 5:15, 5:15] = True  # 10x10 square in each of 5 slices
    er = erode_mask(mask, 3, mode="2d")
    assert er.sum() == 5 * 16  # slices do not erode each other
    np.testing.assert_array_equal(np.argwhere(er[2])[[0, -1]], [[8, 8], [11, 11]])


def test_erosion_3d_cube():
    mask = np.zeros((16, 16, 16), bool)
    mask[3:13, 3:13, 3:13] = True  # 10x10x10 cube
    assert erode_mask(mask, 3, mode="3d").sum() == 4 ** 3
    assert erode_mask(mask, 3, mode="2d").sum() == 10 * 4 ** 2
    # 6-connected cross: a 3x3x3 cube without one corner still keeps its centre
    small = np.zeros((5, 5, 5), bool)
    small[1:4, 1:4, 1:4] = True
    small[1, 1, 1] = False
    er = erode_mask(small, 1, mode="3d")
    assert er.sum() == 1 and er[2, 2, 2]


def test_erosion_cross_removes_corners_each_iteration():
    # one iteration of the 4-connected cross on a 3x3 square leaves only its centre
    mask = np.zeros((1, 5, 5), np.uint8)
    mask[0, 1:4, 1:4] = 1
    er = erode_mask(mask, 1)
    assert er.sum() == 1 and er[0, 2, 2]
    # without a corner the centre survives the cross (it only looks at 4 neighbours);
    # a full 3x3 structure would remove it
    mask[0, 1, 1] = 0
    er = erode_mask(mask, 1)
    assert er.sum() == 1 and er[0, 2, 2]
    # diamond |y| + |x| <= 3 (25 pixels) -> |y| + |x| <= 2 (13) -> <= 1 (5) -> centre (1)
    yy, xx = np.mgrid[-4:5, -4:5]
    diamond = np.broadcast_to(np.abs(yy) + np.abs(xx) <= 3, (3, 9, 9))
    assert [erode_mask(diamond, k)[1].sum() for k in (0, 1, 2, 3)] == [25, 13, 5, 1]


def test_postprocess_multiplies_by_eroded_mask():
    amap = np.ones((5, 20, 20), np.float32) * 0.5
    mask = np.zeros((5, 20, 20), np.uint8)
    mask[:, 5:15, 5:15] = 1
    out = postprocess(amap, mask, median=0, erode=3)
    assert out.sum() == pytest.approx(0.5 * 5 * 16)
    assert out[:, 8:12, 8:12].min() == 0.5
    # erode=0: the un-eroded mask
    assert postprocess(amap, mask, median=0, erode=0).sum() == pytest.approx(0.5 * 5 * 100)
    # input untouched
    assert amap.min() == 0.5


def test_postprocess_order_median_then_mask():
    # A half-space of ones: the median keeps its edge (3 of 5 columns hot at W=9, 2 at W=10),
    # then the eroded all-ones mask zeroes the 3 outer rows/columns of each slice.
    amap = np.zeros((9, 20, 20), np.float32)
    amap[:, :, :10] = 1.0
    mask = np.ones_like(amap, bool)
    out = postprocess(amap, mask, median=5, erode=3)
    assert out[4, 10, 9] == 1.0 and out[4, 10, 10] == 0.0
    assert out[4, 0:3].sum() == 0  # eroded border rows are zero


def test_postprocess_shape_errors():
    with pytest.raises(ValueError):
        postprocess(np.zeros((4, 4)), None)
    with pytest.raises(ValueError):
        postprocess(np.zeros((4, 4, 4)), np.ones((4, 4, 3)))
    with pytest.raises(ValueError):
        erode_mask(np.ones((4, 4, 4)), 1, mode="2.5d")


def _line(n):
    b = np.zeros((12, 12, 12), bool)
    b[2, 2, 2:2 + n] = True
    return b


def test_cc_keeps_7_removes_6():
    assert remove_small_components(_line(7), 7).sum() == 7
    assert remove_small_components(_line(6), 7).sum() == 0
    both = _line(7)
    both[8, 8, 1:7] = True  # a separate 6-voxel line
    kept = remove_small_components(both, 7)
    assert kept.sum() == 7 and not kept[8].any()


def test_cc_diagonal_connectivity():
    b = np.zeros((10, 10, 10), bool)
    b[2, 2, 2:6] = True          # 4 voxels
    b[3, 3, 6:9] = True          # 3 voxels, touching (2,2,5) only through the corner-edge (3,3,6)
    b[5, 5, 5] = True            # 1 voxel touching the next one by a corner only
    b[6, 6, 6] = True
    assert remove_small_components(b, 7, connectivity=3).sum() == 7
    assert remove_small_components(b, 7, connectivity=1).sum() == 0
    assert remove_small_components(b, 2, connectivity=3).sum() == 9  # the corner pair is one component
    assert remove_small_components(b, 2, connectivity=1).sum() == 7


def test_cc_disabled_and_empty():
    b = _line(3)
    np.testing.assert_array_equal(remove_small_components(b, 0), b)
    np.testing.assert_array_equal(remove_small_components(b, None), b)
    assert remove_small_components(np.zeros((3, 3, 3), bool), 7).sum() == 0


def test_binarize_strict_threshold_then_cc():
    amap = np.zeros((12, 12, 12), np.float32)
    amap[2, 2, 2:9] = 0.5   # 7 voxels
    amap[8, 8, 2:4] = 0.9   # 2 voxels
    assert binarize(amap, 0.5).sum() == 0          # strict: 0.5 > 0.5 is False
    assert binarize(amap, 0.4).sum() == 7          # the 2-voxel blob is filtered
    assert binarize(amap, 0.4, min_component=0).sum() == 9
    assert binarize(amap, 0.0, min_component=None).sum() == 9  # zeros stay negative
    assert binarize(amap, 0.4).dtype == bool

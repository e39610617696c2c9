"""Synthetic anomalies (brainuad.data.synthetic): blend formula, masks inside the brain, determinism,
2D and 3D shapes, Perlin noise properties, Poisson interpolation against hand-solvable cases."""

import math

import pytest
import torch

from brainuad.data import synthetic as S


def _brain(shape, margin=3):
    m = torch.zeros(shape, dtype=torch.bool)
    m[(slice(None), slice(None)) + tuple(slice(margin, n - margin) for n in shape[2:])] = True
    return m


def _images(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    return x


# ------------------------------------------------------------------------------------------------ Perlin
@pytest.mark.parametrize("shape,scale", [((32, 48), (4, 6)), ((36, 36), 3), ((8, 16, 24), (2, 4, 3))])
def test_perlin_zero_on_lattice_and_bounded(shape, scale):
    g = torch.Generator().manual_seed(1)
    n = S.perlin_noise(shape, scale, g)
    assert n.shape == shape and n.dtype == torch.float32
    assert n.abs().max() <= 1.0 + 1e-6 and n.std() > 0.05
    scales = (scale,) * len(shape) if isinstance(scale, int) else scale
    # lattice points (every shape/scale voxels, here integers) are zeros of gradient noise
    idx = torch.meshgrid(*[torch.arange(0, s, s // c) for s, c in zip(shape, scales)], indexing="ij")
    assert torch.allclose(n[idx], torch.zeros(()), atol=1e-6)


def test_perlin_seeded_and_smooth():
    a = S.perlin_noise((64, 64), 4, torch.Generator().manual_seed(3))
    b = S.perlin_noise((64, 64), 4, torch.Generator().manual_seed(3))
    c = S.perlin_noise((64, 64), 4, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # 4 cells over 64 px: neighbouring pixels differ far less than the field's range
    assert (a[:, 1:] - a[:, :-1]).abs().max() < 0.15 * (a.max() - a.min())


def test_perlin_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        S.perlin_noise((16, 16), (0, 2))
    with pytest.raises(ValueError, match="2D and 3D"):
        S.perlin_noise((16,), 2)


# ------------------------------------------------------------------------------------------------- blend
def test_blend_hand_computed():
    image = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])
    aug = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    mask = torch.tensor([[[[True, True], [False, True]]]])
    # gamma = 0.25: inside M 0.75 I + 0.25 I_aug; outside I
    expected = torch.tensor([[[[0.75 * 0.2 + 0.25, 0.75 * 0.4], [0.6, 0.75 * 0.8 + 0.125]]]])
    assert torch.allclose(S.blend(image, mask, aug, 0.25), expected)
    assert torch.equal(S.blend(image, mask, aug, 0.0), image)
    one = S.blend(image, mask, aug, 1.0)
    assert torch.equal(one[mask], aug[mask]) and torch.equal(one[~mask], image[~mask])


@pytest.mark.parametrize("shape", [(3, 1, 48, 48), (2, 1, 12, 32, 32)])
def test_draem_gamma_extremes(shape):
    image, brain = _images(shape), _brain(shape)
    same, mask = S.draem_anomaly(image, brain, torch.Generator().manual_seed(0), gamma_range=(0.0, 0.0))
    assert torch.equal(same, image) and mask.any()
    full, mask, det = S.draem_anomaly(image, brain, torch.Generator().manual_seed(0), gamma_range=(1.0, 1.0),
                                      return_details=True)
    m = mask.expand_as(image)
    assert torch.equal(full[m], det["augmented"][m])
    assert torch.equal(full[~m], image[~m])
    assert all(len(ops) == 3 and len({o for o, _ in ops}) == 3 for ops in det["ops"])


@pytest.mark.parametrize("shape", [(4, 1, 40, 40), (2, 2, 10, 24, 24)])
def test_draem_mask_inside_brain_and_shapes(shape):
    image = _images(shape)
    brain = torch.zeros((shape[0], 1, *shape[2:]), dtype=torch.bool)
    brain[..., 8:-8, 10:-6] = True
    syn, mask, det = S.draem_anomaly(image, brain, torch.Generator().manual_seed(5), return_details=True)
    assert syn.shape == image.shape and syn.dtype == image.dtype
    assert mask.shape == brain.shape and mask.dtype == torch.bool
    assert mask.any() and not (mask & ~brain).any()
    # only voxels of the mask change
    changed = (syn != image).any(dim=1, keepdim=True)
    assert not (changed & ~mask).any()
    g = det["gamma"]
    assert ((g >= 0.2) & (g <= 1.0)).all()
    low, high = S.THRESHOLD_RANGES[len(shape) - 2]  # the default range of the field's dimension
    assert all(low <= p["threshold"] <= high for p in det["mask_params"])


@pytest.mark.parametrize("source", ["image", "noise"])
def test_draem_deterministic(source):
    image, brain = _images((3, 1, 32, 32)), _brain((3, 1, 32, 32))
    a = S.draem_anomaly(image, brain, torch.Generator().manual_seed(11), source=source)
    b = S.draem_anomaly(image, brain, torch.Generator().manual_seed(11), source=source)
    c = S.draem_anomaly(image, brain, torch.Generator().manual_seed(12), source=source)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_draem_fixed_threshold_reproduces_mask():
    brain = torch.ones(32, 32, dtype=torch.bool)
    mask, p = S.draem_mask(brain, torch.Generator().manual_seed(2), threshold_range=(0.5, 0.5), rotate=False)
    assert p["threshold"] == pytest.approx(0.5)
    g = torch.Generator().manual_seed(2)
    # replay the draws: scale exponents (one per axis), the field, then the threshold
    scale = tuple(min(2 ** int(torch.randint(0, 7, (1,), generator=g)), 32) for _ in range(2))
    field = S.perlin_noise((32, 32), scale, g)
    assert scale == p["scale"] and torch.equal(mask, field > 0.5)


def test_draem_empty_brain_and_bad_input():
    image = _images((1, 1, 16, 16))
    syn, mask = S.draem_anomaly(image, torch.zeros(1, 1, 16, 16, dtype=torch.bool), torch.Generator())
    assert torch.equal(syn, image) and not mask.any()
    with pytest.raises(ValueError, match="brain_mask"):
        S.draem_anomaly(image, torch.ones(1, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="augmentation"):
        S.draem_anomaly(image, _brain((1, 1, 16, 16)), augmentations=("blur",))


@pytest.mark.parametrize("op", S.AUGMENTATIONS)
@pytest.mark.parametrize("shape", [(1, 24, 24), (1, 4, 16, 16)])
def test_each_augmentation_changes_image_in_range(op, shape):
    x = torch.linspace(0.05, 0.95, math.prod(shape)).reshape(shape)
    x = x[..., torch.randperm(shape[-1], generator=torch.Generator().manual_seed(0))]
    g = torch.Generator().manual_seed(0)
    outs = [S.apply_augmentation(x, op, g)[0] for _ in range(4)]
    assert all(o.shape == x.shape and o.min() >= 0 and o.max() <= 1 for o in outs)
    assert any(not torch.allclose(o, x, atol=1e-3) for o in outs)


def test_augmentations_match_definitions():
    x = torch.tensor([[[0.1, 0.3], [0.6, 0.9]]])
    g = torch.Generator().manual_seed(0)
    out, p = S.apply_augmentation(x, "solarize", g)
    t = p["threshold"]
    assert torch.allclose(out, torch.where(x < t, x, 1 - x))
    out, p = S.apply_augmentation(x, "contrast", g)
    assert torch.allclose(out, x ** p["gamma"], atol=1e-6)
    out, p = S.apply_augmentation(x, "brightness", g)
    assert torch.allclose(out, (x * p["multiply"] + p["add"]).clamp(0, 1), atol=1e-6)
    out = S._autocontrast(x[None], 0.0)[0]
    assert torch.allclose(out, (x - 0.1) / 0.8, atol=1e-6)


# ------------------------------------------------------------------------------------------- FPI / PII
@pytest.mark.parametrize("shape", [(3, 1, 32, 32), (2, 1, 10, 20, 20)])
def test_fpi_formula_target_and_brain(shape):
    image, brain = _images(shape), _brain(shape, margin=4)
    syn, target = S.fpi_anomaly(image, brain, torch.Generator().manual_seed(0))
    foreign = image.roll(1, dims=0)
    assert target.shape == brain.shape and target.dtype == torch.float32
    assert (target > 0).any() and not ((target > 0) & ~brain).any()
    assert torch.allclose(syn, (1 - target) * image + target * foreign)
    # one alpha per sample, within the range
    for i in range(shape[0]):
        vals = target[i][target[i] > 0].unique()
        assert vals.numel() == 1 and 0.05 <= float(vals) <= 1.0
    again = S.fpi_anomaly(image, brain, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], syn) and torch.equal(again[1], target)


def test_poisson_blend_hand_solvable():
    # alpha = 1 and source - target vanishing outside the region: the solution is the source inside
    n = 24
    yy, xx = torch.meshgrid(torch.arange(n).float(), torch.arange(n).float(), indexing="ij")
    region = ((yy - 12) ** 2 + (xx - 12) ** 2 <= 36)[None, None]
    target = (0.3 + 0.01 * xx)[None, None]
    bump = torch.where(region[0, 0], torch.cos(((yy - 12) ** 2 + (xx - 12) ** 2).sqrt() / 8 * math.pi / 2)
                       - math.cos(7 / 8 * math.pi / 2), torch.zeros(()))
    # exactly zero on the region's border ring and outside, so that u = 0 there
    bump = bump * (((yy - 12) ** 2 + (xx - 12) ** 2) < 30)
    source = target + 0.2 * bump[None, None]
    out = S.poisson_blend(target, source, region, torch.tensor([1.0]), iterations=500, tol=1e-10)
    assert torch.allclose(out, source, atol=1e-5)
    half = S.poisson_blend(target, source, region, torch.tensor([0.5]), iterations=500, tol=1e-10)
    assert torch.allclose(half, target + 0.5 * (source - target), atol=1e-5)
    zero = S.poisson_blend(target, source, region, torch.tensor([0.0]))
    assert torch.equal(zero, target)
    # a constant offset between the images is removed by the gradient-domain blend (seamless cloning)
    shifted = S.poisson_blend(target, target + 0.4, region, torch.tensor([1.0]), iterations=500)
    assert torch.allclose(shifted, target, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (2, 1, 8, 16, 16)])
def test_pii_shapes_target_and_locality(shape):
    image, brain = _images(shape), _brain(shape, margin=2)
    syn, target = S.pii_anomaly(image, brain, torch.Generator().manual_seed(1))
    assert syn.shape == image.shape and target.shape == brain.shape
    assert (target > 0).any() and not ((target > 0) & ~brain).any()
    assert torch.equal(syn[(target == 0).expand_as(image)], image[(target == 0).expand_as(image)])
    assert not torch.allclose(syn, image)
    again = S.pii_anomaly(image, brain, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], syn) and torch.equal(again[1], target)


def test_make_anomaly_dispatch():
    image, brain = _images((2, 1, 16, 16)), _brain((2, 1, 16, 16))
    a = S.make_anomaly("fpi", image, brain, torch.Generator().manual_seed(0))
    b = S.fpi_anomaly(image, brain, torch.Generator().manual_seed(0))
    assert torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="kind"):
        S.make_anomaly("cutpaste", image, brain)

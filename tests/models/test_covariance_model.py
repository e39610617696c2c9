"""Covariance model (CM): equals a dense-covariance Mahalanobis distance; fitted without gradient steps."""

import numpy as np
import pytest
import torch

from brainuad.models import build
from brainuad.training import TrainSettings, fit, load_model


def _dense_reference(x, ref, mask, lam):
    """Per slice: numpy covariance (ddof 1) of the brain pixels of the N reference slices + lam I, then
    t = d * Sigma^-1 d, value sqrt(t) (0 where t < 0)."""
    d_, h, w = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for z in range(d_):
        idx = np.flatnonzero(mask[z].ravel())
        if idx.size == 0:
            continue
        samples = ref[:, z].reshape(ref.shape[0], -1)[:, idx].astype(np.float64)
        sigma = np.cov(samples, rowvar=False, ddof=1) + lam * np.eye(idx.size)
        dev = x[z].ravel()[idx] - samples.mean(0)
        t = dev * np.linalg.solve(sigma, dev)
        val = np.where(t > 0, np.sqrt(np.clip(t, 0, None)), 0.0)
        flat = out[z].reshape(-1)
        flat[idx] = val
    return out


def _data(seed=0, n=6, shape=(3, 5, 6)):
    rng = np.random.default_rng(seed)
    base = rng.random(shape)
    ref = np.clip(base + 0.1 * rng.standard_normal((n, *shape)), 0, 1).astype(np.float32)
    x = np.clip(base + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    x[1, 2:4, 2:4] += 0.5  # a lesion
    mask = np.ones(shape, bool)
    mask[:, 0, :] = False
    mask[2] = False  # an empty slice
    return ref, x, mask


@pytest.mark.parametrize("lam", [1e-2, 1e-3])
def test_equals_dense_covariance_reference(lam):
    ref, x, mask = _data()
    model = build("cm", image_size=x.shape, lam=lam, slices_per_solve=2)
    model.fit_reference(ref)
    got = model.anomaly_map(torch.from_numpy(x)[None, None], torch.from_numpy(mask)[None, None])[0, 0]
    want = _dense_reference(x, ref, mask, lam)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)
    assert got.dtype == torch.float32
    assert float(got[1, 2:4, 2:4].mean()) > float(got[1][torch.from_numpy(mask[1])].mean())
    assert torch.all(got[torch.from_numpy(~mask)] == 0)


def test_map_shape_range_and_batch():
    ref, x, mask = _data(1)
    model = build("cm", image_size=x.shape)
    model.fit_reference(ref)
    xs = torch.from_numpy(np.stack([x, ref[0]]))[:, None]
    ms = torch.from_numpy(np.stack([mask, mask]))[:, None]
    amap = model.anomaly_map(xs, ms)
    assert amap.shape == xs.shape and float(amap.min()) >= 0
    torch.testing.assert_close(amap[1:2], model.anomaly_map(xs[1:2], ms[1:2]))


def test_fit_is_closed_form_and_checkpoint_restores(tmp_path):
    ref, x, mask = _data(2)
    hp = {"image_size": list(x.shape), "lam": 0.01}
    result = fit("cm", hp, ref, ref[:2], TrainSettings(max_steps=5, batch_size=2, seed=0),
                 out_model=tmp_path / "model.pt", out_log=tmp_path / "log.tsv", workdir=tmp_path / "work",
                 progress=False)
    assert result["status"] == "done" and result["step"] == 0
    model = load_model(tmp_path / "model.pt", device="cpu")
    assert model.reference.shape == (6, *x.shape)
    np.testing.assert_array_equal(model.reference.numpy(), ref)
    got = model.anomaly_map(torch.from_numpy(x)[None, None], torch.from_numpy(mask)[None, None])[0, 0]
    np.testing.assert_allclose(got.numpy(), _dense_reference(x, ref, mask, 0.01), rtol=1e-4, atol=1e-5)
    assert (tmp_path / "log.tsv").read_text().splitlines()[0] == "step\tloss\tval_loss\tseconds"


def test_errors():
    model = build("cm", image_size=(3, 5, 6))
    x = torch.rand(1, 1, 3, 5, 6)
    with pytest.raises(RuntimeError, match="fit_reference"):
        model.anomaly_map(x, x > 0)
    with pytest.raises(ValueError, match="at least 2"):
        model.fit_reference(np.zeros((1, 3, 5, 6)))
    with pytest.raises(ValueError, match="expected training volumes"):
        model.fit_reference(np.zeros((4, 3, 5, 5)))
    with pytest.raises(ValueError, match="lam"):
        build("cm", lam=0)

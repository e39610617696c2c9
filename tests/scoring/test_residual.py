import numpy as np
import pytest
import torch

from brainuad.scoring import score


def test_l1_averages_samples_and_masks():
    image = np.array([[[[1.0, 0.5], [0.0, 0.2]]]])  # (1, 1, 2, 2)
    recons = np.stack([np.full_like(image, 0.5), np.full_like(image, 0.3)])  # mean 0.4
    mask = np.array([[[[1, 1], [1, 0]]]])
    out = score("l1", image, recons, mask)
    np.testing.assert_allclose(out, [[[[0.6, 0.1], [0.4, 0.0]]]], atol=1e-6)
    out2 = score("l2", torch.tensor(image), torch.tensor(recons), torch.tensor(mask))
    assert isinstance(out2, torch.Tensor)
    np.testing.assert_allclose(out2.numpy(), [[[[0.36, 0.01], [0.16, 0.0]]]], atol=1e-6)


def test_score_checks_names_and_shapes():
    x = np.zeros((1, 1, 2, 2))
    with pytest.raises(KeyError, match="unknown scoring"):
        score("nope", x, x[None], x)
    with pytest.raises(ValueError, match="recons must have shape"):
        score("l1", x, x, x)


def test_schema_scoring_names_are_the_registry():
    """A new scoring is one module with @register plus its name in the schema enum; this keeps the two equal."""
    from pathlib import Path

    import yaml

    from brainuad.scoring import available

    schema = yaml.safe_load((Path(__file__).resolve().parents[2] / "workflow" / "schemas" /
                             "config.schema.yaml").read_text())
    assert schema["properties"]["scorings"]["additionalProperties"]["properties"]["name"]["enum"] == available()


def test_l1_l2_numpy_path_equals_torch_path():
    rng = np.random.default_rng(0)
    image = rng.random((2, 1, 3, 8, 8)).astype(np.float32)
    recons = rng.random((4, 2, 1, 3, 8, 8)).astype(np.float32)
    mask = rng.random((2, 1, 3, 8, 8)) > 0.3
    for name in ("l1", "l2"):
        out = score(name, image, recons, mask)  # numpy path (no torch)
        ref = score(name, torch.tensor(image), torch.tensor(recons), torch.tensor(mask)).numpy()
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)


def test_registry_names_are_found_without_importing_and_l1_needs_no_torch():
    """scoring_fn imports only the module that registers a name: an l1 score job never imports torch."""
    import subprocess
    import sys

    from brainuad.scoring import available, registered_names

    assert sorted(registered_names()) == available()
    code = ("import sys; import numpy as np; from brainuad.scoring import score, uses_model_maps\n"
            "x = np.ones((1, 1, 2, 2), np.float32)\n"
            "out = score('l1', x, 0.5 * x[None], x)\n"
            "assert not uses_model_maps('l1') and uses_model_maps('native') and out[0, 0, 0, 0] == 0.5\n"
            "print(sorted(m for m in ('torch', 'brainuad.scoring.ssim', 'brainuad.scoring.mahalanobis') "
            "if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"

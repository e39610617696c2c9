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

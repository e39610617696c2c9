"""Test-time switches applied to a model (reconstruct.attributes)."""

import pytest
import torch

from brainuad.inference import set_attributes


def test_set_attributes_changes_known_attributes_and_rejects_unknown_ones():
    model = torch.nn.Linear(2, 2)
    model.encoder_crop = 1.0
    assert set_attributes(model, {"encoder_crop": 0.5}) is model and model.encoder_crop == 0.5
    assert set_attributes(model, None) is model and model.encoder_crop == 0.5
    with pytest.raises(ValueError, match=r"reconstruct\.attributes\.encoder_crp: model 'cddpm' has no attribute"):
        set_attributes(model, {"encoder_crp": 0.5}, "model 'cddpm'")
    assert not hasattr(model, "encoder_crp")

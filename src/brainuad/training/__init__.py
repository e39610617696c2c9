"""Training: one seeded, resumable loop for every model (see :mod:`brainuad.training.loop`)."""

from .loop import TrainSettings, fit, load_model, resolve_device

__all__ = ["TrainSettings", "fit", "load_model", "resolve_device"]

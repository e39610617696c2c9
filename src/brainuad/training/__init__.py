"""Training: one seeded, resumable loop for every model (see :mod:`brainuad.training.loop`).

Exports are lazy (:mod:`brainuad.lazy`).
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "loop": ["TrainSettings", "fit", "load_model", "resolve_device"],
})

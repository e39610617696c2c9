"""``native``: the anomaly map a learning-free model (e.g. ``thresh``) produced itself."""

from __future__ import annotations

import numpy as np

from . import register


@register("native", uses="maps")
def native(maps: np.ndarray) -> np.ndarray:
    """The stored maps as float32.

    Parameters
    ----------
    maps : ndarray, (N, D, H, W), the model's own anomaly maps

    Returns
    -------
    ndarray, (N, D, H, W), float32
    """
    return np.asarray(maps, dtype=np.float32)

"""Training data and the training call of SADM Stage II (:mod:`brainuad.models.sadm`).

Stage II slices carry three channels (:data:`brainuad.models.sadm.CHANNELS`: image, brain mask, label), so
the one training loop (:func:`brainuad.training.fit`) samples them like any 2D model: volumes are packed as
(N, D, 3, H, W), a batch is (B, 1, 3, H, W).

Where the slices come from
--------------------------
``synthetic`` (block II): the healthy training volumes of the fold (labels zero; the model draws DRAEM
anomalies inside the brain mask), checkpoint selection on the fold's healthy validation volumes with
anomalies drawn by the loop's fixed validation generator.

``labels`` (block III): the ``stage2_train`` subjects of a pathology set (``splits["train"]``, removed from
its test split by the splits rule) with their lesion labels. Checkpoint selection uses the same training
subjects: neither the threshold-calibration (``val``) nor the test subjects are ever seen in training or
model selection (the public code selects the Stage II checkpoint on the validation subjects it later
calibrates the threshold on; peers.md §1.5; that leakage is not reproduced).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.pack import load_pack, subject_index
from ..utils import read_json

#: Stage II training data kinds
KINDS = ("synthetic", "labels")


def stage2_volumes(pack: dict, subjects, labels: bool) -> np.ndarray:
    """Image, brain mask and label of ``subjects`` stacked per slice.

    Parameters
    ----------
    pack : dict
        A loaded ``volumes.npz`` (:func:`brainuad.data.pack.load_pack`).
    subjects : sequence of str
    labels : bool
        Take the lesion labels (``segs``); False: a zero label channel (synthetic anomalies are drawn later).

    Returns
    -------
    ndarray float16 (N, D, 3, H, W)
    """
    idx = subject_index(pack, list(subjects))
    if not len(idx):
        raise ValueError("no Stage II training subjects")
    images = pack["images"][idx].astype(np.float16)
    masks = pack["masks"][idx].astype(np.float16)
    segs = pack["segs"][idx].astype(np.float16) if labels else np.zeros_like(images)
    if labels and "ignore" in pack:  # voxels the labels do not describe count as background inside the brain
        segs = np.where(pack["ignore"][idx] > 0, 0, segs).astype(np.float16)
    return np.stack([images, masks, segs], axis=2)


def stage2_data(kind: str, volumes_path: str | Path, splits_path: str | Path, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) Stage II volumes (N, D, 3, H, W) of one training-data ``kind`` (see the module docstring).

    Parameters
    ----------
    kind : {"synthetic", "labels"}
    volumes_path, splits_path : path
        The healthy training set's pack and splits (``synthetic``) or the pathology set's (``labels``).
    fold : int
        Cross-validation fold of the healthy set (``synthetic``; unused for ``labels``).
    """
    if kind not in KINDS:
        raise ValueError(f"Stage II data kind must be one of {KINDS}, got {kind!r}")
    pack, splits = load_pack(volumes_path), read_json(splits_path)
    if kind == "synthetic":
        if "folds" not in splits:
            raise ValueError(f"{splits_path}: synthetic Stage II data need a healthy dataset's splits (folds)")
        split = splits["folds"][int(fold)]
        return stage2_volumes(pack, split["train"], False), stage2_volumes(pack, split["val"], False)
    train = splits.get("train") or []
    if not train:
        raise ValueError(f"{splits_path}: no 'train' subjects; set datasets.<name>.stage2_train for this "
                         "pathology set")
    leaked = set(train) & (set(splits.get("test", [])) | set(splits.get("val", [])))
    if leaked:
        raise ValueError(f"{splits_path}: Stage II training subjects also in val/test: {sorted(leaked)}")
    vols = stage2_volumes(pack, train, True)
    return vols, vols


def stage1_spec(checkpoint: str | Path, noise_level=None) -> dict:
    """``{"arch", "hparams", "noise_level"}`` of a trained Stage I ``model.pt`` (its hparams as built, e.g. with
    the ``image_size`` the training filled in; initialise-only keys dropped)."""
    import torch

    from ..models import INIT_ONLY

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "arch" not in ckpt:
        raise ValueError(f"{checkpoint} is not a model checkpoint written by brainuad.training.fit")
    hparams = {k: v for k, v in ckpt["hparams"].items() if k not in INIT_ONLY}
    return {"arch": ckpt["arch"], "hparams": hparams, "noise_level": noise_level}


def stage2_hparams(hparams: dict, stage1: dict, data_kind: str, checkpoint: str | Path | None) -> dict:
    """The ``sadm`` constructor arguments: the model's ``hparams`` plus its Stage I (arch, hparams, checkpoint,
    test-time noise level) and whether the data are synthetic.

    Parameters
    ----------
    hparams : dict
        The Stage II model's ``hparams`` section.
    stage1 : dict
        ``{"arch", "hparams", "noise_level"}`` of the Stage I model (``noise_level``: its reconstruct setting,
        None = its own ``t_test``).
    data_kind : {"synthetic", "labels"}
    checkpoint : path or None
        The Stage I ``model.pt``.
    """
    out = dict(hparams)
    out.update(stage1_arch=stage1["arch"], stage1_hparams=dict(stage1["hparams"]), synthetic=data_kind == "synthetic")
    if stage1.get("noise_level") is not None:
        out["noise_level"] = stage1["noise_level"]
    if checkpoint is not None:
        out["stage1_checkpoint"] = str(checkpoint)
    return out

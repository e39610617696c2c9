"""A synthetic-anomaly evaluation set: the healthy test split of a packed dataset with synthetic anomalies.

P8.6 evaluates on "DRAEM", the healthy IXI test set with DRAEM anomalies (thesis Table 4.6, method-spec
§1.1, §4.7). :func:`make_synthetic_pack` writes such a set in the pack format of
:func:`brainuad.data.pack.pack_dataset` (``images``, brain ``masks``, ``segs`` = the synthetic anomaly
masks, ``subjects``, ``ages``, ``affine``, ``spacing``), so every downstream rule (splits, reconstruct,
score, evaluate, tables) treats it as one more pathology dataset. Its subjects are the healthy *test*
subjects, which no model trained on that healthy dataset has seen.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import InputDataError
from . import synthetic

MODES = ("volume", "slices")


def subject_seed(seed: int, subject: str) -> int:
    """Seed of one subject's anomalies: depends on ``seed`` and the subject id only (not on the order or
    number of subjects), so adding a subject leaves the others' anomalies unchanged."""
    return (int(seed) * 1_000_003 + zlib.crc32(subject.encode())) % (2**63)


def synthesize_subject(image: np.ndarray, mask: np.ndarray, foreign: np.ndarray | None, *, kind: str, seed: int,
                       mode: str = "volume", options: dict | None = None, device: str | torch.device = "cpu"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic anomalies in one volume.

    Parameters
    ----------
    image : ndarray (D, H, W) float in [0, 1]
    mask : ndarray (D, H, W), brain mask (> 0 inside)
    foreign : ndarray (D, H, W), optional
        Source of the foreign patches of ``pii`` / ``fpi`` (another subject); None = the mirror image.
    kind : {"draem", "pii", "fpi"}
    seed : int
        Seed of a CPU ``torch.Generator`` (the same anomalies on every device).
    mode : {"volume", "slices"}
        One 3D anomaly field per volume, or an independent 2D anomaly per axial slice (the author's
        2D pipeline; slices without brain stay unchanged).
    options : dict
        Keyword arguments of the generator function (:func:`brainuad.data.synthetic.draem_anomaly`, ...).
    device : str or torch.device

    Returns
    -------
    (image ndarray (D, H, W) float32, target ndarray (D, H, W) float32): the DRAEM mask (0/1) or the
    PII/FPI interpolation factor.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    options = dict(options or {})
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).to(device)
    m = torch.from_numpy(np.asarray(mask) > 0).to(device)
    f = None if foreign is None else torch.from_numpy(np.asarray(foreign, dtype=np.float32)).to(device)
    if mode == "volume":
        x, m = x[None, None], m[None, None]
        f = None if f is None else f[None, None]
    else:
        x, m = x[:, None], m[:, None]
        f = x.flip(-1) if f is None else f[:, None]
    if kind in ("pii", "fpi"):
        options["source"] = f if f is not None else x.flip(-1)
    out, target = synthetic.make_anomaly(kind, x, m, gen, **options)
    if mode == "volume":
        out, target = out[0, 0], target[0, 0]
    else:
        out, target = out[:, 0], target[:, 0]
    return out.float().cpu().numpy(), target.float().cpu().numpy()


def make_synthetic_pack(volumes: str | Path, splits: dict, out: str | Path, *, kind: str = "draem", seed: int = 0,
                        mode: str = "volume", options: dict | None = None, split: str = "test",
                        device: str | torch.device = "cpu") -> dict:
    """Write the ``split`` subjects of a healthy pack with synthetic anomalies as a new pack.

    Parameters
    ----------
    volumes : path
        ``volumes.npz`` of the healthy dataset (:func:`brainuad.data.pack.pack_dataset`).
    splits : dict
        Its splits (``{"test": [...], ...}``, :func:`brainuad.data.splits.healthy_splits`).
    out : path
        Output ``volumes.npz``: ``images`` (N, D, H, W) float16 with the anomalies, ``masks`` (brain) and
        ``segs`` (anomaly: DRAEM mask, PII/FPI factor > 0) uint8 (images clipped to [0, 1]), ``subjects``, ``ages``, ``affine``,
        ``spacing`` (and ``ignore`` when the healthy pack has one).
    kind, mode, options, device :
        See :func:`synthesize_subject`.
    seed : int
        Base seed; each subject's anomalies come from :func:`subject_seed` (seed, subject id).
    split : str
        Key of ``splits`` whose subjects are used (the healthy test split).

    Returns
    -------
    dict: ``subjects`` (count), ``shape``, ``anomalous_fraction`` (mean fraction of brain voxels
    labelled anomalous), ``empty`` (subjects without an anomaly voxel).
    """
    if kind not in synthetic.KINDS:
        raise ValueError(f"unknown synthetic anomaly kind {kind!r}; expected one of {synthetic.KINDS}")
    wanted = list(splits.get(split) or [])
    with np.load(volumes, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    subjects = data["subjects"].tolist()
    missing = [s for s in wanted if s not in subjects]
    if not wanted or missing:
        raise InputDataError(volumes, f"the {split!r} split has no subject to build a synthetic set from"
                             if not wanted else f"subjects of the {split!r} split are not in the pack: {missing[:5]}")
    idx = [subjects.index(s) for s in wanted]
    images, segs, fractions, empty = [], [], [], []
    for k, i in enumerate(idx):
        foreign = data["images"][idx[(k + 1) % len(idx)]] if len(idx) > 1 else None
        img, target = synthesize_subject(data["images"][i], data["masks"][i], foreign, kind=kind,
                                         seed=subject_seed(seed, subjects[i]), mode=mode, options=options,
                                         device=device)
        seg = (target > 0).astype(np.uint8)
        brain = data["masks"][i] > 0
        images.append(np.clip(img, 0.0, 1.0).astype(np.float16))
        segs.append(seg)
        fractions.append(float(seg[brain].mean()) if brain.any() else 0.0)
        if not seg.any():
            empty.append(subjects[i])
    pack = {
        "images": np.stack(images),
        "masks": data["masks"][idx],
        "segs": np.stack(segs),
        "subjects": data["subjects"][idx],
        "ages": data["ages"][idx] if "ages" in data else np.full(len(idx), np.nan),
        "affine": data["affine"],
        "spacing": data["spacing"],
    }
    if "ignore" in data:
        pack["ignore"] = data["ignore"][idx]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez_compressed(tmp, **pack)
    os.replace(tmp, out)
    return {"subjects": len(idx), "shape": list(pack["images"].shape), "anomalous_fraction": float(np.mean(fractions)),
            "empty": empty}

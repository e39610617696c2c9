"""Pack the pre-processed NIfTI subjects of a dataset into one array file for fast training.

Array convention used everywhere downstream: a volume is (D, H, W) with D the axial slices
(inferior -> superior), H anterior -> posterior (so ``imshow`` shows anterior at the top) and W the
left-right axis of the canonical RAS image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..utils import read_json


def ras_to_dhw(arr: np.ndarray) -> np.ndarray:
    """Canonical RAS array (X, Y, Z) -> (D=Z, H=-Y, W=X)."""
    return np.ascontiguousarray(arr.transpose(2, 1, 0)[:, ::-1, :])


def dhw_to_ras(arr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`ras_to_dhw`: (D, H, W) -> canonical RAS (X, Y, Z)."""
    return np.ascontiguousarray(np.asarray(arr)[:, ::-1, :].transpose(2, 1, 0))


def pack_dataset(subjects: list[str], nifti_dir: str | Path, out: str | Path, ages=None) -> dict:
    """Stack ``{subject}_{image,mask,seg}.nii.gz`` of every subject into ``out`` (.npz).

    ``{subject}_ignore.nii.gz`` (voxels to leave out of every voxel-wise metric, see
    :func:`brainuad.data.preprocess.preprocess_subject`) is read where it exists; the pack gets an
    ``ignore`` array (N, D, H, W) uint8 only when some subject has an ignore voxel.

    Parameters
    ----------
    subjects : list of str
    nifti_dir : path
        Folder written by the preprocess rule.
    out : path
        Output .npz with ``images`` (N, D, H, W) float16, ``masks`` and ``segs`` (N, D, H, W) uint8,
        ``subjects`` (N,) str, ``ages`` (N,) float (NaN when unknown), ``affine`` (4, 4), ``spacing`` (3,).
    ages : sequence of float, optional

    Returns
    -------
    dict with the number of subjects and the array shape.
    """
    import nibabel as nib  # here: the jobs that only load packs (train, reconstruct, evaluate) skip nibabel

    nifti_dir = Path(nifti_dir)
    if not subjects:
        raise InputDataError(nifti_dir, "no subject left to pack (every subject was excluded; see the "
                                        "dataset's exclusions table)")
    images, masks, segs, ignores, affine, shape = [], [], [], [], None, None
    for subject in subjects:
        parts = {}
        for kind in ("image", "mask", "seg", "ignore"):
            path = nifti_dir / f"{subject}_{kind}.nii.gz"
            if kind == "ignore" and not path.exists():
                parts[kind] = np.zeros_like(parts["seg"])
                continue
            img = nib.as_closest_canonical(nib.load(path))
            arr = np.asarray(img.dataobj)
            if shape is None:
                shape, affine = arr.shape, img.affine
            elif arr.shape != shape:
                raise InputDataError(path, f"shape {arr.shape} differs from the dataset's {shape}; "
                                           "all subjects must be pre-processed with the same crop/pad")
            parts[kind] = ras_to_dhw(arr)
        images.append(parts["image"].astype(np.float16))
        masks.append((parts["mask"] > 0).astype(np.uint8))
        segs.append((parts["seg"] > 0).astype(np.uint8))
        ignores.append((parts["ignore"] > 0).astype(np.uint8))
    ages = np.full(len(subjects), np.nan) if ages is None else np.asarray(
        [float(a) if a not in ("", None) else np.nan for a in ages], dtype=float)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    extra = {"ignore": np.stack(ignores)} if any(i.any() for i in ignores) else {}
    np.savez(tmp, images=np.stack(images), masks=np.stack(masks), segs=np.stack(segs),
             subjects=np.asarray(subjects, dtype=str), ages=ages, affine=affine,
             spacing=np.sqrt((affine[:3, :3] ** 2).sum(0)), **extra)
    os.replace(tmp, out)
    return {"subjects": len(subjects), "shape": tuple(int(s) for s in np.stack(images).shape)}


def load_pack(path: str | Path) -> dict:
    """Load a packed dataset into a dict of arrays (see :func:`pack_dataset`)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def subject_index(pack: dict, subjects) -> np.ndarray:
    """Indices of ``subjects`` in a pack, in the given order."""
    lookup = {s: i for i, s in enumerate(pack["subjects"].tolist())}
    missing = [s for s in subjects if s not in lookup]
    if missing:
        raise KeyError(f"subjects not in the packed dataset: {missing[:5]}")
    return np.asarray([lookup[s] for s in subjects], dtype=int)


def training_subset(subjects, fraction: float, seed: int) -> list[str]:
    """A seeded subset of ``round(fraction * N)`` (at least 1) of the N training subjects (``train.fraction``,
    the training-set size study of P8.1-Fig5).

    One seeded permutation of the subjects (sorted first, so the input order does not matter) is cut at
    the requested size, so the subsets of one seed are nested: the 10 % subset lies inside the 20 % one,
    which lies inside the 60 % one, and 1.0 keeps every subject.

    Parameters
    ----------
    subjects : sequence of str
        The fold's training subjects.
    fraction : float
        In (0, 1].
    seed : int
        The fold's seed (config ``seed`` + fold): every model of a fold gets the same subset.

    Returns
    -------
    list of str
        The kept subjects, in the order given.
    """
    subjects = list(subjects)
    if not 0 < fraction <= 1:
        raise ValueError(f"train.fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return subjects
    order = np.random.default_rng(seed).permutation(len(subjects))
    ranked = sorted(subjects)
    keep = {ranked[i] for i in order[:max(1, int(round(fraction * len(subjects))))]}
    return [s for s in subjects if s in keep]


def fold_volumes(volumes_path: str | Path, splits_path: str | Path, fold: int, *, fraction: float = 1.0,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Healthy training and validation images (N, D, H, W) of one cross-validation fold; ``fraction`` < 1
    keeps the seeded subset :func:`training_subset` of the training subjects (validation stays whole)."""
    pack = load_pack(volumes_path)
    split = read_json(splits_path)["folds"][int(fold)]
    train = training_subset(split["train"], fraction, seed)
    return pack["images"][subject_index(pack, train)], pack["images"][subject_index(pack, split["val"])]

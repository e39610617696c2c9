"""Apply one configured scoring to a stored reconstruct output (``results/recon/...npz``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.pack import load_pack, subject_index
from . import score, scoring_fn, uses_model_maps, uses_recons_and_maps


def score_stored(scoring: dict, recon_path: str | Path, volumes_path: str | Path) -> dict[str, np.ndarray]:
    """Anomaly maps of every stored subject under one scoring.

    Parameters
    ----------
    scoring : dict
        ``name`` (a registered scoring), optional ``samples`` (use only the first N stored
        reconstructions) and the scoring's parameters.
    recon_path : path
        Reconstruct output: ``recons`` (S, N, D, H, W) or, for learning-free models, ``maps`` (N, D, H, W)
        (both for a ``"recon_map"`` model, whose ``recons+maps`` scorings combine them), plus ``subjects``
        and ``split`` (N,).
    volumes_path : path
        The dataset's pack (inputs and brain masks); read only for scorings of reconstructions.

    Returns
    -------
    dict with ``maps`` (N, D, H, W) float16, ``subjects`` and ``split`` as stored. A scoring whose
    pre-trained weights are missing (:class:`~brainuad.models.backbones.BackboneNotConfigured`, e.g.
    ``l1_lpips`` without a local backbone file) gives NaN maps and ``not_configured`` (the reason);
    the evaluation then reports "not configured" instead of numbers.
    """
    params = dict(scoring)
    name = params.pop("name")
    extra = {}
    if isinstance(params.get("backbone"), dict):  # the report names the backbone a score used
        from ..catalog import describe_backbone

        extra["backbone"] = np.array(describe_backbone(params["backbone"]))
    samples = params.pop("samples", None)
    with np.load(recon_path) as z:
        rec = {k: z[k] for k in z.files}
    if uses_model_maps(name):
        if "maps" not in rec:
            raise ValueError(f"scoring {name!r} needs a model that produces anomaly maps; "
                             f"{recon_path} holds reconstructions (use l1, ssim, ...)")
        maps = scoring_fn(name)(rec["maps"], **params)
    else:
        try:
            maps = _score_recons(name, rec, recon_path, volumes_path, samples, params)
        except FileNotFoundError as err:
            from ..models.backbones import BackboneNotConfigured

            if not isinstance(err, BackboneNotConfigured):
                raise
            maps = np.full(rec["recons"].shape[1:], np.nan, dtype=np.float16)
            return {"maps": maps, "subjects": rec["subjects"], "split": rec["split"],
                    "not_configured": np.array(f"scoring {name!r}: {err}"), **extra}
    return {"maps": maps.astype(np.float16), "subjects": rec["subjects"], "split": rec["split"], **extra}


def _score_recons(name, rec, recon_path, volumes_path, samples, params) -> np.ndarray:
    """(N, D, H, W) float32 maps of a scoring of reconstructions, one volume at a time."""
    if "recons" not in rec:
        raise ValueError(f"scoring {name!r} needs reconstructions; {recon_path} holds anomaly maps "
                         "of a learning-free model (use scoring 'native')")
    recons = rec["recons"]
    if samples is not None:
        if samples > recons.shape[0]:
            raise ValueError(f"scoring {name!r} asks for samples={samples} but {recon_path} holds "
                             f"{recons.shape[0]}; raise reconstruct.samples for this model")
        recons = recons[:samples]
    both = uses_recons_and_maps(name)
    if both and "maps" not in rec:
        raise ValueError(f"scoring {name!r} needs reconstructions and the model's own maps; {recon_path} "
                         "holds reconstructions only (a SADM Stage II model stores both)")
    pack = load_pack(volumes_path)
    idx = subject_index(pack, rec["subjects"].tolist())
    maps = np.zeros(recons.shape[1:], dtype=np.float32)
    for i, j in enumerate(idx):  # one volume at a time: (1, 1, D, H, W)
        image = pack["images"][j][None, None].astype(np.float32)
        mask = pack["masks"][j][None, None]
        extra = {"model_map": rec["maps"][i][None, None].astype(np.float32)} if both else {}
        maps[i] = score(name, image, recons[:, i][:, None, None].astype(np.float32), mask, **params, **extra)[0, 0]
    return maps


def score_stored_jobs(jobs: list[dict], log=None) -> None:
    """Score one or more stored reconstruct outputs and write one ``results/scores/...npz`` per job.

    One process runs them all (config ``jobs.score: per_model``: every fold, dataset and scoring of one model),
    so the interpreter and the scoring code are loaded once; every job gets exactly what a job of its own
    computes (:func:`score_stored` on the same files), and the file is written the same way.

    Parameters
    ----------
    jobs : list of dict
        ``{"scoring", "recon", "volumes", "output"}`` per job: the ``score`` rule's ``params.scoring`` (a
        scoring entry with ``name``), the reconstruct output and the pack it reads, and the npz to write.
    log : logging.Logger, optional
    """
    for job in jobs:
        out = score_stored(job["scoring"], job["recon"], job["volumes"])
        Path(job["output"]).parent.mkdir(parents=True, exist_ok=True)
        np.savez(job["output"], **out)
        if log:
            log.info("%s: scoring %s, maps %s", job["output"], job["scoring"]["name"], out["maps"].shape)

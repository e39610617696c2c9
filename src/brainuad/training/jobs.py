"""The training jobs of the workflow: one or more folds of one model, one after another in one process.

The rules ``train``, ``train_stage2`` and ``pretrain_encoder`` train one fold per job (config ``jobs.train:
per_fold``); with ``per_model`` one job per training set, model and run trains every fold the run needs
(``brainuad.study.Study.train_groups``), so the interpreter, torch and the model code are loaded once.
Each fold gets exactly what a job of its own would get -- the same data, settings and seed (``fit`` seeds
everything from the fold's ``settings["seed"]``) -- and writes the same files (tested bit-identical).

A fold that stops early (SIGTERM / SIGUSR1 before a time limit; :func:`brainuad.training.fit`) ends the
call: its state is saved under its workdir and the folds after it are not started. A rerun resumes it;
folds that finished resume at their last step and only write their files again.
"""

from __future__ import annotations

import logging

from ..data.pack import fold_volumes
from ..models import model_class
from .loop import TrainSettings, fit
from .pretrain import pretrain_encoder
from .stage2 import stage1_spec, stage2_data, stage2_hparams


def _report(log: logging.Logger | None, what: str, result: dict) -> None:
    if log:
        log.info("%s: %s", what, result)


def train_jobs(jobs: list[dict], *, arch: str, hparams: dict, device: str = "auto",
               log: logging.Logger | None = None) -> list[dict]:
    """Train model ``arch`` on one or more folds (rule ``train`` and its per-model rules).

    Parameters
    ----------
    jobs : list of dict
        Per fold: ``fold``, ``settings`` (:class:`TrainSettings` fields plus the optional ``fraction``, the
        seeded share of the training subjects), ``volumes`` and ``splits`` (the training set's pack and
        splits), ``encoder`` (the SSL-pretrained encoder file, or None / missing), the outputs ``model`` and
        ``log``, and ``workdir`` (resumable state).
    arch, hparams
        Registry name and hyper-parameters of the model (the same for every fold). A slice model gets the
        packed volumes' (H, W) as ``image_size`` when ``hparams`` has none, a volume model (D, H, W).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` ...
    log : logging.Logger, optional

    Returns
    -------
    list of dict
        :func:`fit`'s result per fold trained, in order; the last one is not ``"done"`` when a fold was
        interrupted (the folds after it were not started).
    """
    results = []
    for job in jobs:
        settings = dict(job["settings"])
        train, val = fold_volumes(job["volumes"], job["splits"], job["fold"], fraction=settings.pop("fraction", 1.0),
                                  seed=settings["seed"])
        fold_hparams = dict(hparams)
        fold_hparams.setdefault("image_size", list(train.shape[-model_class(arch).input_dims:]))
        if job.get("encoder"):
            fold_hparams["pretrained_encoder"] = str(job["encoder"])
        results.append(_fit_fold(arch, fold_hparams, train, val, settings, job, device, log))
        if results[-1]["status"] != "done":
            break
    return results


def _fit_fold(arch: str, hparams: dict, train, val, settings: dict, job: dict, device: str,
              log: logging.Logger | None) -> dict:
    """:func:`brainuad.training.fit` of one fold into the job's ``model``, ``log`` and ``workdir``, reported to
    ``log``; the result with ``workdir``."""
    result = fit(arch, hparams, train, val, TrainSettings(**settings), out_model=job["model"], out_log=job["log"],
                 workdir=job["workdir"], device=device)
    _report(log, f"training {job['model']}", result)
    return {**result, "workdir": str(job["workdir"])}


def train_stage2_jobs(jobs: list[dict], *, arch: str, hparams: dict, stage1: dict, data: dict, device: str = "auto",
                      log: logging.Logger | None = None) -> list[dict]:
    """Train a SADM Stage II model on one or more folds, each on top of its fold's frozen Stage I model.

    Parameters
    ----------
    jobs : list of dict
        Per fold: ``fold``, ``settings``, ``stage1`` (the Stage I ``model.pt`` of the fold), ``volumes`` and
        ``splits`` of the Stage II training data, the outputs ``model`` and ``log``, and ``workdir``.
    arch, hparams
        The Stage II model's registry name and ``hparams`` section.
    stage1 : dict
        ``Study.stage1_params``: the Stage I ``noise_level`` is used.
    data : dict
        ``Study.stage2_data``: ``{"kind": "synthetic" | "labels", "dataset"}``.
    device, log
        As :func:`train_jobs`.

    Returns
    -------
    list of dict, as :func:`train_jobs`.
    """
    results = []
    for job in jobs:
        train, val = stage2_data(data["kind"], job["volumes"], job["splits"], job["fold"])
        spec = stage1_spec(job["stage1"], stage1["noise_level"])
        fold_hparams = stage2_hparams(hparams, spec, data["kind"], job["stage1"])
        if log:
            log.info("Stage II %s fold %s on %s data (%s): %d training / %d validation volumes", arch, job["fold"],
                     data["kind"], data.get("dataset"), len(train), len(val))
        results.append(_fit_fold(arch, fold_hparams, train, val, job["settings"], job, device, log))
        if results[-1]["status"] != "done":
            break
    return results


def pretrain_jobs(jobs: list[dict], *, arch: str, hparams: dict, device: str = "auto",
                  log: logging.Logger | None = None) -> list[dict]:
    """Masked-image-modelling pre-training of the encoder of model ``arch`` on one or more folds.

    Parameters
    ----------
    jobs : list of dict
        Per fold: ``fold``, ``settings`` (the model's ``pretrain`` section with the fold's ``seed``: the
        :func:`~brainuad.training.pretrain.pretrain_encoder` keywords), ``volumes`` and ``splits``, the
        outputs ``encoder`` and ``log``, and ``workdir``.
    arch, hparams
        The model whose encoder is pre-trained (its ``encoder_hparams``).
    device, log
        As :func:`train_jobs`.

    Returns
    -------
    list of dict, as :func:`train_jobs`.
    """
    encoder_hparams = model_class(arch).encoder_hparams(hparams)
    results = []
    for job in jobs:
        train, val = fold_volumes(job["volumes"], job["splits"], job["fold"])
        result = pretrain_encoder(train, val, encoder_hparams=encoder_hparams, device=device, out_path=job["encoder"],
                                  out_log=job["log"], workdir=job["workdir"], **job["settings"])
        _report(log, f"encoder pre-training {job['encoder']} (encoder {encoder_hparams})", result)
        results.append({**result, "workdir": str(job["workdir"])})
        if result["status"] != "done":
            break
    return results


def stopped(results: list[dict]) -> str | None:
    """The message a training script exits with when the last fold of ``results`` was interrupted, else None."""
    if results and results[-1]["status"] != "done":
        last = results[-1]
        return f"training stopped at step {last['step']} (signal); rerun to resume from {last['workdir']}"
    return None

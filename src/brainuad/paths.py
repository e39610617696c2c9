"""Result paths shared by the Snakefile and the workflow scripts (torch-free, importable at parse time)."""

from __future__ import annotations


def trainset_of(dataset: str, datasets: dict) -> str:
    """The healthy dataset whose models are evaluated on ``dataset`` (itself when it is healthy)."""
    ds = datasets[dataset]
    return dataset if ds["role"] == "healthy" else ds["trainset"]


def eval_dir(trainset: str, model: str, run: str, fold, dataset: str, scoring: str) -> str:
    """Folder with ``metrics.tsv`` and ``threshold.json`` of one evaluation."""
    return f"results/eval/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}"


def eval_dir_lookup(datasets: dict):
    """``f(model, run, fold, dataset, scoring) -> eval_dir`` for :func:`brainuad.reporting.tables.aggregate`."""
    return lambda model, run, fold, dataset, scoring: eval_dir(trainset_of(dataset, datasets), model, run, fold,
                                                               dataset, scoring)

# Evaluation (CPU): post-processing, threshold search on the unhealthy validation set, per-subject metrics.


rule evaluate:
    input:
        scores="results/scores/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.npz",
        recon="results/recon/{trainset}/{model}/{run}/fold-{fold}/{dataset}.npz",
        volumes="results/data/{dataset}/volumes.npz",
    output:
        threshold="results/eval/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}/threshold.json",
        metrics="results/eval/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}/metrics.tsv",
    log:
        "logs/evaluate/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.log",
    benchmark:
        "results/benchmarks/evaluate/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    params:
        role=lambda wc: DATASETS[wc.dataset]["role"],
        options=canon(config["evaluation"]),
        samples=lambda wc: SCORINGS[wc.scoring].get("samples"),
    script:
        "../scripts/evaluate.py"

# Evaluation (CPU): post-processing, threshold search on the unhealthy validation set, per-subject metrics.


rule evaluate:
    input:
        scores=paths.SCORES,
        recon=paths.RECON,
        volumes=paths.VOLUMES,
    output:
        threshold=paths.THRESHOLD,
        metrics=paths.METRICS,
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
        conventions=lambda wc: STUDY.evaluation_conventions(wc.dataset),
    script:
        "../scripts/evaluate.py"

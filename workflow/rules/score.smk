# Anomaly scoring (CPU): stored reconstructions -> anomaly maps.


rule score:
    input:
        recon="results/recon/{trainset}/{model}/{run}/fold-{fold}/{dataset}.npz",
        volumes="results/data/{dataset}/volumes.npz",
    output:
        "results/scores/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.npz",
    log:
        "logs/score/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.log",
    benchmark:
        "results/benchmarks/score/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        scoring=lambda wc: canon(SCORINGS[wc.scoring]),
    script:
        "../scripts/score.py"

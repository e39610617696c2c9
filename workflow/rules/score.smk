# Anomaly scoring (CPU): stored reconstructions -> anomaly maps.


rule score:
    input:
        recon=paths.RECON,
        volumes=paths.VOLUMES,
    output:
        paths.SCORES,
    log:
        "logs/score/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.log",
    benchmark:
        "results/benchmarks/score/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        scoring=lambda wc: STUDY.scoring_params(wc.scoring),  # entry + SSIM conventions of SSIM scorings
    script:
        "../scripts/score.py"

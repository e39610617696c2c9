# Reconstruction (GPU on a cluster): every evaluation volume of a dataset through one trained model.
# Stored, so new scores, post-processing and threshold protocols never touch a GPU again.


rule reconstruct:
    input:
        model=model_input,
        volumes=paths.VOLUMES,
        splits=paths.SPLITS,
    output:
        paths.RECON,
    log:
        "logs/reconstruct/{trainset}/{model}/{run}/fold-{fold}/{dataset}.log",
    benchmark:
        "results/benchmarks/reconstruct/{trainset}/{model}/{run}/fold-{fold}/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    params:
        arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
        hparams=model_hparams,
        settings=reconstruct_settings,
        role=lambda wc: DATASETS[wc.dataset]["role"],
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/reconstruct.py"

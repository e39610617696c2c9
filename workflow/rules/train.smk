# Training (GPU on a cluster): one job per training set x model x run x fold, after the optional
# self-supervised pre-training of a cDDPM encoder (models with a `pretrain` section).
# Resumable state lives under work/ (not a declared output, so Snakemake never deletes it).


rule pretrain_encoder:
    input:
        volumes=paths.fill(paths.VOLUMES, dataset="{trainset}"),
        splits=paths.fill(paths.SPLITS, dataset="{trainset}"),
    output:
        encoder=paths.ENCODER,
        log=paths.PRETRAIN_LOG,
    log:
        "logs/pretrain_encoder/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/pretrain_encoder/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=12 * 60,
    params:
        arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
        hparams=model_hparams,
        settings=pretrain_settings,
        device=config["device"],
        workdir=paths.PRETRAIN_WORKDIR,
    script:
        "../scripts/pretrain_encoder.py"


rule train:
    wildcard_constraints:
        model=model_alternatives(stage2=False),
    input:
        unpack(pretrain_input),
        volumes=paths.fill(paths.VOLUMES, dataset="{trainset}"),
        splits=paths.fill(paths.SPLITS, dataset="{trainset}"),
    output:
        model=paths.MODEL,
        log=paths.TRAIN_LOG,
    log:
        "logs/train/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/train/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
        hparams=model_hparams,
        settings=train_settings,
        workdir=paths.TRAIN_WORKDIR,
        device=config["device"],
    script:
        "../scripts/train.py"


# SADM Stage II (P8.6): a segmentation Unet on top of the frozen Stage I model of the same training set and
# fold. The Stage I model.pt is an input (retraining Stage I retrains Stage II); the scoring weight beta is a
# scoring parameter (changing it reruns scoring onward only).
rule train_stage2:
    wildcard_constraints:
        model=model_alternatives(stage2=True),
    input:
        unpack(stage2_inputs),
    output:
        model=paths.MODEL,
        log=paths.TRAIN_LOG,
    log:
        "logs/train_stage2/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/train_stage2/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
        hparams=model_hparams,
        stage1=lambda wc: STUDY.stage1_params(wc.model),
        data=lambda wc: STUDY.stage2_data(wc.model),
        settings=train_settings,
        workdir=paths.TRAIN_WORKDIR,
        device=config["device"],
    script:
        "../scripts/train_stage2.py"

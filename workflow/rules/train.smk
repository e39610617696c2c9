# Training (GPU on a cluster): one job per training set x model x run x fold.
# Resumable state lives under work/ (not a declared output, so Snakemake never deletes it).


rule train:
    input:
        volumes="results/data/{trainset}/volumes.npz",
        splits="results/splits/{trainset}.json",
    output:
        model="results/models/{trainset}/{model}/{run}/fold-{fold}/model.pt",
        log="results/models/{trainset}/{model}/{run}/fold-{fold}/train_log.tsv",
    log:
        "logs/train/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/train/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        arch=lambda wc: model_entry(wc.model)["arch"],
        hparams=model_hparams,
        settings=train_settings,
        workdir="work/train/{trainset}/{model}/{run}/fold-{fold}",
        device=config["device"],
    script:
        "../scripts/train.py"

# Analyses beyond the tables: the domain-shift / intensity-alignment analysis of P8.3 §4.5.2.


rule domain_shift:
    input:
        model=model_input,
        volumes="results/data/{trainset}/volumes.npz",
        splits="results/splits/{trainset}.json",
    output:
        tsv="results/analysis/domain_shift/{trainset}/{model}/{run}/fold-{fold}.tsv",
        hist="results/analysis/domain_shift/{trainset}/{model}/{run}/fold-{fold}.npz",
    log:
        "logs/domain_shift/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/domain_shift/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    params:
        spec=canon(config["report"].get("domain_shift") or {}),
        settings=reconstruct_settings,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/domain_shift.py"


rule domain_shift_figure:
    input:
        tsv=[f"{job}.tsv" for job in domain_shift_jobs()],
        hist=[f"{job}.npz" for job in domain_shift_jobs()],
    output:
        figure="results/figures/domain_shift.png",
        table="results/tables/domain_shift.tsv",
    log:
        "logs/domain_shift/figure.log",
    conda:
        "../../envs/report.yaml"
    params:
        labels=[MODELS[m].get("label", m) for m in (config["report"].get("domain_shift") or {}).get("models", [])],
    script:
        "../scripts/make_domain_shift_figure.py"

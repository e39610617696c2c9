# Raw data -> manifest -> per-subject preprocessing -> packed arrays -> splits.


rule make_phantom:
    output:
        directory("results/raw/{source}/{cohort}"),
    log:
        "logs/make_phantom/{source}/{cohort}.log",
    benchmark:
        "results/benchmarks/make_phantom/{source}/{cohort}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        n=lambda wc: config["sources"][wc.source]["cohorts"][wc.cohort],
        seed=lambda wc: config["sources"][wc.source]["seed"],
        options=lambda wc: canon(config["sources"][wc.source].get("options", {})),
    script:
        "../scripts/make_phantom.py"


checkpoint manifest:
    input:
        raw=raw_dir,
    output:
        "results/data/{dataset}/manifest.tsv",
    log:
        "logs/manifest/{dataset}.log",
    conda:
        "../../envs/preprocess.yaml"
    params:
        kind=lambda wc: config["sources"][DATASETS[wc.dataset]["source"]]["kind"],
        sequence=lambda wc: DATASETS[wc.dataset]["sequence"],
    script:
        "../scripts/make_manifest.py"


rule preprocess:
    input:
        unpack(raw_subject_files),
    output:
        image="results/data/{dataset}/nifti/{subject}_image.nii.gz",
        mask="results/data/{dataset}/nifti/{subject}_mask.nii.gz",
        seg="results/data/{dataset}/nifti/{subject}_seg.nii.gz",
        qc="results/data/{dataset}/nifti/{subject}_qc.json",
    log:
        "logs/preprocess/{dataset}/{subject}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}/{subject}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        options=canon(config["preprocess"]),
    script:
        "../scripts/preprocess.py"


rule pack:
    input:
        unpack(preprocessed_files),
        manifest="results/data/{dataset}/manifest.tsv",
    output:
        "results/data/{dataset}/volumes.npz",
    log:
        "logs/pack/{dataset}.log",
    benchmark:
        "results/benchmarks/pack/{dataset}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../scripts/pack.py"


rule splits:
    input:
        manifest="results/data/{dataset}/manifest.tsv",
    output:
        "results/splits/{dataset}.json",
    log:
        "logs/splits/{dataset}.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        role=lambda wc: DATASETS[wc.dataset]["role"],
        options=canon(config["splits"]),
        val=lambda wc: DATASETS[wc.dataset].get("val", 0.1),
        seed=config["seed"],
    script:
        "../scripts/make_splits.py"

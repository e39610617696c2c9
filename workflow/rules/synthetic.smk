# Synthetic-anomaly evaluation sets (datasets with a `synthetic` block, e.g. the DRAEM-augmented healthy test
# set of P8.6): built from the packed healthy test split of another dataset, then split, reconstructed, scored
# and evaluated like any pathology dataset (the splits rule reads the source dataset's manifest).


rule synthesize:
    input:
        volumes=lambda wc: paths.fill(paths.VOLUMES, dataset=STUDY.synthetic_parent(wc.dataset)),
        splits=lambda wc: paths.fill(paths.SPLITS, dataset=STUDY.synthetic_parent(wc.dataset)),
    output:
        paths.VOLUMES,
    wildcard_constraints:
        dataset=_alternatives(STUDY.synthetic_datasets) or "(?!x)x",
    log:
        "logs/synthesize/{dataset}.log",
    benchmark:
        "results/benchmarks/synthesize/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        spec=lambda wc: canon(STUDY.synthetic_settings(wc.dataset)),
        device=config["device"],
    script:
        "../scripts/synthesize.py"

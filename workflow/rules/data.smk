# Raw data -> manifest (+ exclusions) -> per-subject preprocessing -> packed arrays -> splits; QC per dataset.
# Real data (sources.<name>.kind other than phantom) are read in place: only the manifest job opens them
# (the source kinds of brainuad.data.sources), the Snakefile itself never reads a NIfTI header.


rule make_phantom:
    output:
        directory(paths.RAW),
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
        manifest=paths.MANIFEST,
        exclusions=paths.EXCLUSIONS,
    log:
        "logs/manifest/{dataset}.log",
    benchmark:
        "results/benchmarks/manifest/{dataset}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        kind=lambda wc: STUDY.source_of(wc.dataset)["kind"],
        sequence=lambda wc: DATASETS[wc.dataset]["sequence"],
        scan=lambda wc: canon(STUDY.scan_settings(wc.dataset)),
    script:
        "../scripts/make_manifest.py"


rule preprocess:
    input:
        unpack(raw_subject_files),
    output:
        **{kind: paths.fill(paths.NIFTI, kind=kind) for kind in paths.NIFTI_KINDS},
        qc=paths.SUBJECT_QC,
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
        options=lambda wc: canon(STUDY.preprocess_options(wc.dataset)),
        subject=subject_flags,
        source=lambda wc: DATASETS[wc.dataset]["source"],
        strict=lambda wc: bool(STUDY.source_of(wc.dataset).get("strict", False)),
    script:
        "../scripts/preprocess.py"


# config jobs.preprocess (config/README.md "jobs"): per_dataset = one rule preprocess__<dataset> per phantom
# dataset whose single job writes every subject's files (a phantom cohort's subjects are known from the config;
# other sources stay one job per subject). ruleorder puts them first; rule preprocess still makes any file
# outside them.
if STUDY.preprocess_jobs() == "per_dataset":
    _preprocess_groups = []
    for _dataset, _outputs in STUDY.preprocess_groups().items():

        rule:
            name:
                STUDY.group_rule("preprocess", _dataset)
            input:
                raw=STUDY.raw_dir(_dataset),
                manifest=paths.fill(paths.MANIFEST, dataset=_dataset),
            output:
                [path for files in _outputs.values() for path in files.values()],
            log:
                f"logs/preprocess/{_dataset}.log",
            benchmark:
                f"results/benchmarks/preprocess/{_dataset}.tsv"
            conda:
                "../../envs/preprocess.yaml"
            threads: 1
            resources:
                mem_mb=4000,
                runtime=30 * len(_outputs),
            params:
                options=canon(STUDY.preprocess_options(_dataset)),
                source=DATASETS[_dataset]["source"],
                strict=bool(STUDY.source_of(_dataset).get("strict", False)),
                dataset=_dataset,
                outputs=_outputs,
            script:
                "../scripts/preprocess.py"

        _preprocess_groups.append(STUDY.group_rule("preprocess", _dataset))

    if _preprocess_groups:
        workflow.ruleorder(*_preprocess_groups, "preprocess")


rule pack:
    input:
        unpack(preprocessed_files),
        manifest=paths.MANIFEST,
    output:
        paths.VOLUMES,
    wildcard_constraints:
        dataset=_alternatives(STUDY.source_datasets),  # synthetic datasets: rule synthesize
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
        manifest=lambda wc: STUDY.split_manifest(wc.dataset),
        volumes=paths.VOLUMES,
    output:
        paths.SPLITS,
    log:
        "logs/splits/{dataset}.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        role=lambda wc: DATASETS[wc.dataset]["role"],
        options=canon(config["splits"]),
        val=lambda wc: DATASETS[wc.dataset].get("val", 0.1),
        stage2_train=lambda wc: DATASETS[wc.dataset].get("stage2_train", 0),  # SADM block III held-out subjects
        seed=config["seed"],
        kind=lambda wc: STUDY.source_of(wc.dataset)["kind"],
    script:
        "../scripts/make_splits.py"


rule qc:
    input:
        unpack(qc_inputs),
    output:
        table=report(paths.QC_TABLE, caption="../report/qc_flagged.rst", category="Data quality",
                     labels={"dataset": "{dataset}", "file": "QC table"}),
        figure=report(paths.QC_FIGURE, caption="../report/qc_slices.rst", category="Data quality",
                      labels={"dataset": "{dataset}", "file": "mid-slices"}),
        exclusions=paths.QC_EXCLUSIONS,
    log:
        "logs/qc/{dataset}.log",
    benchmark:
        "results/benchmarks/qc/{dataset}.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        label=lambda wc: DATASETS[wc.dataset].get("label", wc.dataset),
        flags=canon(config["qc"]),
    script:
        "../scripts/qc.py"

# Tables (as data: TSV, Markdown, LaTeX), figures and the PDF report.


rule table:
    input:
        table_input,
    output:
        tsv="results/tables/{table}.tsv",
        md="results/tables/{table}.md",
        tex="results/tables/{table}.tex",
    log:
        "logs/table/{table}.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=lambda wc: canon(TABLES[wc.table]),
        models=canon(MODELS),
        datasets=canon(DATASETS),
        folds=FOLDS,
        run=RUN,
    script:
        "../scripts/make_table.py"


rule qualitative_figure:
    input:
        qualitative_inputs,
    output:
        "results/figures/qualitative_{table}.png",
    log:
        "logs/qualitative_figure/{table}.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=lambda wc: canon(QUALITATIVE[wc.table]),
        table=lambda wc: canon(TABLES[wc.table]),
        models=canon(MODELS),
        datasets=canon(DATASETS),
        run=RUN,
        options=canon(config["evaluation"]),
        histogram_bins=lambda wc: QUALITATIVE[wc.table].get("histogram_bins", 500),
    script:
        "../scripts/make_qualitative_figure.py"


rule training_curves:
    input:
        train_logs(),
    output:
        "results/figures/training_curves.png",
    log:
        "logs/training_curves/training_curves.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/make_training_curves.py"


rule report:
    input:
        tables=expand("results/tables/{table}.tsv", table=TABLES),
        figures=report_figures(),
        sweeps=expand("results/tables/sweep_{sweep}.tsv", sweep=ALL_SWEEPS),
        qc_tables=expand("results/qc/{dataset}/qc.tsv", dataset=DATASETS),
        qc_exclusions=expand("results/qc/{dataset}/exclusions.tsv", dataset=DATASETS),
        qc_figures=expand("results/qc/{dataset}/qc.png", dataset=DATASETS),
        inference=["results/tables/inference_time.tsv"] if config["report"].get("inference_time") else [],
        captions=sorted(str(p) for p in Path(workflow.basedir, "workflow", "report").glob("*.rst")),
    output:
        "results/report/benchmark.pdf",
    log:
        "logs/report/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        tables=canon(TABLES),
        qualitative=canon(QUALITATIVE),
        inference_time=canon(config["report"].get("inference_time") or {}),
        sweeps=canon({**SWEEPS, **MODEL_SWEEPS}),
        title=config["report"]["title"],
        datasets=canon(DATASETS),
        config=canon(config),
        benchmarks="results/benchmarks",
    script:
        "../scripts/make_report.py"


rule sweep_figure:
    input:
        sweep_inputs,
    output:
        figure="results/figures/sweep_{sweep}.png",
        table="results/tables/sweep_{sweep}.tsv",
    log:
        "logs/sweep_figure/{sweep}.log",
    conda:
        "../../envs/report.yaml"
    params:
        kind=lambda wc: "model" if wc.sweep in MODEL_SWEEPS else "scoring",
        sweep=lambda wc: canon(MODEL_SWEEPS.get(wc.sweep) or SWEEPS[wc.sweep]),
        ids=sweep_ids,
        points=sweep_points,
        models=canon(MODELS),
        datasets=canon(DATASETS),
        folds=FOLDS,
        run=RUN,
    script:
        "../scripts/make_sweep_figure.py"


rule mhd_figure:
    input:
        **mhd_figure_inputs(),
    output:
        "results/figures/mhd.png",
    log:
        "logs/mhd_figure/mhd_figure.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=canon(config["report"].get("mhd_figure", {})),
        options=canon(config["evaluation"]),
    script:
        "../scripts/make_mhd_figure.py"


rule inference_time:
    input:
        [job["file"] for job in inference_time_jobs()],
    output:
        tsv="results/tables/inference_time.tsv",
        md="results/tables/inference_time.md",
    log:
        "logs/inference_time/inference_time.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=canon(config["report"].get("inference_time") or {}),
        jobs=[{"row": job["row"]} for job in inference_time_jobs()],
    script:
        "../scripts/make_inference_time.py"

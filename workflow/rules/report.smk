# Tables (as data: TSV, Markdown, LaTeX), figures and the PDF report.


rule table_stats:
    # Permutation tests and bootstrap CIs of one table (its own cached job: a new test setting reruns only
    # this, the table files and the report).
    input:
        table_input,
    output:
        paths.TABLE_STATS,
    log:
        "logs/table_stats/{table}.log",
    benchmark:
        "results/benchmarks/table_stats/{table}.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        spec=lambda wc: STUDY.table_spec(wc.table),
        settings=lambda wc: STUDY.stats_settings(wc.table),
        models=canon(MODELS),
        datasets=canon(DATASETS),
        folds=FOLDS,
        run=RUN,
    script:
        "../scripts/make_table_stats.py"


rule claims:
    # The thesis' claims (config `claims`) re-tested on this run.
    input:
        STUDY.claims_inputs(),
    output:
        paths.CLAIMS,
    log:
        "logs/claims/claims.log",
    benchmark:
        "results/benchmarks/claims/claims.tsv"
    conda:
        "../../envs/report.yaml"
    params:
        claims=canon(config["claims"]),
        missing=STUDY.claims_missing(),
        settings=STUDY.stats_settings(),
        models=canon(MODELS),
        datasets=canon(DATASETS),
        folds=FOLDS,
        run=RUN,
    script:
        "../scripts/make_claims.py"


rule table:
    input:
        metrics=table_input,
        stats=paths.TABLE_STATS,
    output:
        **{ext: paths.fill(paths.TABLE, ext=ext) for ext in paths.TABLE_EXTS if ext != "tsv"},
        tsv=report(paths.fill(paths.TABLE, ext="tsv"), caption="../report/table.rst", category="Tables",
                   labels={"table": "{table}"}),
    log:
        "logs/table/{table}.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=lambda wc: STUDY.table_spec(wc.table),
        settings=lambda wc: STUDY.stats_settings(wc.table),
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
        report(paths.QUALITATIVE_FIGURE, caption="../report/qualitative.rst", category="Figures",
               subcategory="Qualitative", labels={"table": "{table}"}),
    log:
        "logs/qualitative_figure/{table}.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=lambda wc: canon(STUDY.qualitative[wc.table]),
        table=lambda wc: canon(TABLES[wc.table]),
        models=canon(MODELS),
        datasets=canon(DATASETS),
        run=RUN,
        options=canon(config["evaluation"]),
        conventions=STUDY.figure_conventions(),
        histogram_bins=lambda wc: STUDY.qualitative[wc.table].get("histogram_bins", 500),
    script:
        "../scripts/make_qualitative_figure.py"


rule training_curves:
    input:
        STUDY.train_logs(),
    output:
        report(paths.TRAINING_CURVES, caption="../report/training_curves.rst", category="Figures",
               subcategory="Training", labels={"figure": "training curves"}),
    log:
        "logs/training_curves/training_curves.log",
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/make_training_curves.py"


rule report:
    input:
        **STUDY.report_inputs(),
    output:
        report(paths.REPORT, caption="../report/benchmark_pdf.rst", category="Report",
               labels={"file": "benchmark.pdf"}),
    log:
        "logs/report/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        tables=canon(TABLES),
        qualitative=canon(STUDY.qualitative),
        inference_time=canon(config["report"].get("inference_time") or {}),
        sweeps=canon({**STUDY.scoring_sweeps, **STUDY.model_sweeps}),
        title=config["report"]["title"],
        datasets=canon(DATASETS),
        config=canon(config),
        conventions=STUDY.conventions_provenance(),
        preset=STUDY.conventions["preset"],
        benchmarks=paths.BENCHMARKS,
        lesion_overlap=(config["evaluation"].get("lesions") or {}).get("overlap", 0.0),
    script:
        "../scripts/make_report.py"


rule sweep_figure:
    input:
        sweep_inputs,
    output:
        figure=report(paths.SWEEP_FIGURE, caption="../report/sweep.rst", category="Figures", subcategory="Sweeps",
                      labels={"sweep": "{sweep}"}),
        table=paths.SWEEP_TABLE,
    log:
        "logs/sweep_figure/{sweep}.log",
    conda:
        "../../envs/report.yaml"
    params:
        kind=lambda wc: "model" if wc.sweep in STUDY.model_sweeps else "scoring",
        sweep=lambda wc: canon(STUDY.model_sweeps.get(wc.sweep) or STUDY.scoring_sweeps[wc.sweep]),
        protocol=lambda wc: STUDY.sweep_protocols[wc.sweep],
        ids=sweep_ids,
        points=sweep_points,
        models=canon(MODELS),
        datasets=canon(DATASETS),
        folds=lambda wc: STUDY.sweep_folds(wc.sweep),
        run=RUN,
    script:
        "../scripts/make_sweep_figure.py"


rule mhd_figure:
    input:
        **STUDY.mhd_figure_inputs(),
    output:
        report(paths.MHD_FIGURE, caption="../report/mhd.rst", category="Figures", subcategory="Scores",
               labels={"figure": "MHD scores"}),
    log:
        "logs/mhd_figure/mhd_figure.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=canon(config["report"].get("mhd_figure", {})),
        options=canon(config["evaluation"]),
        conventions=STUDY.figure_conventions(),
    script:
        "../scripts/make_mhd_figure.py"


rule inference_time:
    input:
        [job["file"] for job in STUDY.inference_time_jobs()],
    output:
        tsv=paths.fill(paths.INFERENCE_TIME, ext="tsv"),
        md=report(paths.fill(paths.INFERENCE_TIME, ext="md"), caption="../report/inference_time.rst",
                  category="Tables", labels={"table": "inference time"}),
    log:
        "logs/inference_time/inference_time.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=canon(config["report"].get("inference_time") or {}),
        jobs=[{"row": job["row"]} for job in STUDY.inference_time_jobs()],
    script:
        "../scripts/make_inference_time.py"


rule lesionwise:
    # Lesion-wise detection by lesion size (report.lesionwise): table (TSV long, Markdown) and figure.
    input:
        table_input,
    output:
        tsv=paths.fill(paths.LESION_TABLE, ext="tsv"),
        md=paths.fill(paths.LESION_TABLE, ext="md"),
        figure=paths.LESION_FIGURE,
    log:
        "logs/lesionwise/{table}.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=lambda wc: STUDY.table_spec(wc.table),
        strata=canon((config["evaluation"].get("lesions") or {}).get("strata")),
        models=canon(MODELS),
        datasets=canon(DATASETS),
        folds=FOLDS,
        run=RUN,
    script:
        "../scripts/make_lesionwise.py"


rule healthy_fpr_table:
    # The healthy-FPR thresholds applied to the pathology test sets of a table's rows (report.healthy_fpr).
    input:
        fpr_inputs,
    output:
        tsv=paths.fill(paths.FPR_TABLE, ext="tsv"),
        md=paths.fill(paths.FPR_TABLE, ext="md"),
    log:
        "logs/healthy_fpr_table/{table}.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=lambda wc: STUDY.table_spec(wc.table),
        models=canon(MODELS),
        datasets=canon(DATASETS),
        folds=FOLDS,
        run=RUN,
    script:
        "../scripts/make_healthy_fpr_table.py"

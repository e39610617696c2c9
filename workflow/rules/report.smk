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
        spec=lambda wc: TABLES[wc.table],
        models=MODELS,
        datasets=DATASETS,
        folds=FOLDS,
        run=RUN,
    script:
        "../scripts/make_table.py"


rule figures:
    input:
        qualitative=qualitative_inputs(),
        train_logs=train_logs(),
        volumes=expand("results/data/{dataset}/volumes.npz", dataset=TABLES[config["report"]["qualitative"]["table"]]["datasets"]),
    output:
        qualitative="results/figures/qualitative.png",
        curves="results/figures/training_curves.png",
    log:
        "logs/figures/figures.log",
    conda:
        "../../envs/report.yaml"
    params:
        spec=config["report"]["qualitative"],
        table=TABLES[config["report"]["qualitative"]["table"]],
        models=MODELS,
        datasets=DATASETS,
        run=RUN,
        options=config["evaluation"],
    script:
        "../scripts/make_figures.py"


rule report:
    input:
        tables=expand("results/tables/{table}.tsv", table=TABLES),
        figures=rules.figures.output,
    output:
        "results/report/benchmark.pdf",
    log:
        "logs/report/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        tables=TABLES,
        title=config["report"]["title"],
        config=config,
        benchmarks="results/benchmarks",
    script:
        "../scripts/make_report.py"

# Analyses beyond the tables: the domain-shift / intensity-alignment analysis of P8.3 §4.5.2.


rule domain_shift:
    input:
        model=model_input,
        volumes=paths.fill(paths.VOLUMES, dataset="{trainset}"),
        splits=paths.fill(paths.SPLITS, dataset="{trainset}"),
    output:
        tsv=paths.fill(paths.DOMAIN_SHIFT, ext="tsv"),
        hist=paths.fill(paths.DOMAIN_SHIFT, ext="npz"),
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
        tsv=STUDY.domain_shift_files("tsv"),
        hist=STUDY.domain_shift_files("npz"),
    output:
        figure=report(paths.DOMAIN_SHIFT_FIGURE, caption="../report/domain_shift.rst", category="Figures",
                      subcategory="Domain shift", labels={"figure": "domain shift"}),
        table=paths.DOMAIN_SHIFT_TABLE,
    log:
        "logs/domain_shift/figure.log",
    conda:
        "../../envs/report.yaml"
    params:
        labels=STUDY.domain_shift_labels(),
    script:
        "../scripts/make_domain_shift_figure.py"


# P8.1's slice-wise detection (P8.1-Fig6), lesion-size analysis (P8.1-Fig4) and healthy vs lesion l1 bars (Figure 4.1)
# on the rows of report.p81.table.
rule p81_analysis:
    input:
        recon=[e["recon"] for e in STUDY.p81_entries()],
        volumes=sorted({e["volumes"] for e in STUDY.p81_entries()}),
        metrics=[e["metrics"] for e in STUDY.p81_entries()],
    output:
        table=paths.P81_TABLE,
        slicewise=report(paths.fill(paths.P81_FIGURE, kind="slicewise"), caption="../report/p81_slicewise.rst",
                         category="Figures", subcategory="P8.1", labels={"figure": "slice-wise detection"}),
        size=report(paths.fill(paths.P81_FIGURE, kind="lesion_size"), caption="../report/p81_lesion_size.rst",
                    category="Figures", subcategory="P8.1", labels={"figure": "Dice vs lesion size"}),
        l1=report(paths.fill(paths.P81_FIGURE, kind="l1"), caption="../report/p81_l1.rst",
                  category="Figures", subcategory="P8.1", labels={"figure": "l1 residual"}),
    log:
        "logs/p81_analysis.log",
    conda:
        "../../envs/report.yaml"
    params:
        entries=STUDY.p81_entries(),
    script:
        "../scripts/p81_analysis.py"

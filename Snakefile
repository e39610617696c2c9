# brainuad: deep generative models for unsupervised anomaly detection in brain MRI.
# Targets: all_tables (tables + sweeps + report, the default), all_data, all_models, all_sweeps.
# Data flow and path scheme: see README.md and ../shared/design/ARCHITECTURE.md.

from pathlib import Path


# A --configfile replaces the default instead of being merged into it. SLURM jobs are started with
# `--configfiles X` but without --replace-workflow-config; merging would silently change their params.
if not workflow.overwrite_configfiles:

    configfile: str(Path(workflow.basedir) / "config" / "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/synthetic.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/reconstruct.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/analysis.smk"


localrules:
    all_tables,
    all_models,
    all_sweeps,
    all_data,


rule all_tables:
    input:
        tables=STUDY.all_table_files(),
        sweeps=STUDY.all_sweep_files(),
        report=paths.REPORT,
    default_target: True


rule all_data:
    # Pre-processed, packed and quality-checked data of every dataset. On SLURM, run this stage inside one
    # allocation (README "Cluster") instead of one SLURM job per subject.
    input:
        STUDY.data_files(),


rule all_models:
    input:
        STUDY.all_model_files(),


rule all_sweeps:
    input:
        STUDY.all_sweep_files(),


onsuccess:
    # How many subjects every dataset kept and excluded, and where the reasons are (brainuad.data.qc).
    from brainuad.data.qc import exclusion_summary

    summary = exclusion_summary(DATASETS)
    if summary:
        print(summary)

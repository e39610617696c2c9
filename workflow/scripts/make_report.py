"""Assemble results/report/benchmark.pdf from the tables, the figures and the provenance."""

from pathlib import Path

from brainuad.reporting.report import write_report
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
i, p = snakemake.input, snakemake.params
write_report(snakemake.output[0], captions=i.captions, tables=i.tables, inference=i.inference, figures=i.figures,
             qc_tables=i.qc_tables, qc_exclusions=i.qc_exclusions, qc_figures=i.qc_figures, table_specs=p.tables,
             qualitative=p.qualitative, inference_time=p.inference_time, sweeps=p.sweeps, datasets=p.datasets,
             title=p.title, config=p.config, benchmarks=p.benchmarks, preset=p.preset, conventions=p.conventions,
             configfiles=getattr(snakemake, "configfiles", []), published=i.published, claims=i.claims,
             lesionwise=i.lesionwise, healthy_fpr=i.healthy_fpr, lesion_overlap=p.lesion_overlap,
             heldout=i.heldout)
log.info("report written to %s", Path(snakemake.output[0]).resolve())
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)

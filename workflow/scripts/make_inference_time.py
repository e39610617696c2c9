"""Inference time per volume of the models of one table (seconds measured inside the reconstruct jobs)."""

from pathlib import Path

from brainuad.reporting.tables import to_markdown
from brainuad.reporting.timing import display, inference_time_table, read_timing
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
entries = [{"row": job["row"], **read_timing(path)} for job, path in zip(p.jobs, snakemake.input)]
table = inference_time_table(entries, reference=p.spec.get("reference"))
table.to_csv(snakemake.output.tsv, sep="\t", index=False)
Path(snakemake.output.md).write_text(to_markdown(display(table), p.spec.get("title", "Inference time per volume")))
log.info("\n%s", table.to_string())
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)

"""Generate one cohort of the built-in phantom (raw NIfTI + participants.tsv)."""

from pathlib import Path

from brainuad.data.phantom import generate_cohort
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
out = Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
table = generate_cohort(snakemake.wildcards.cohort, snakemake.params.n, out, snakemake.params.seed,
                        **snakemake.params.options)
log.info("%d subjects written to %s", len(table), out)
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)

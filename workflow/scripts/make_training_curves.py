"""Training and validation loss of every trained model and fold."""

from pathlib import Path

from brainuad.reporting.figures import training_curves
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
logs = {str(Path(f).parent.relative_to("results/models")): f for f in snakemake.input}
training_curves(logs, snakemake.output[0])
log.info("%d training curves", len(logs))
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)

"""Figure 4.5 analogue: multi-sample scores of one subject and the pixel correlation behind MHD_full."""

from brainuad.reporting.example_figures import write_mhd_figure
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
i = snakemake.input
subject, sl, pixel = write_mhd_figure(snakemake.output[0], snakemake.params.spec, snakemake.params.options,
                                      recon=i.recon, volumes=i.volumes, threshold=i.threshold,
                                      maps={key: i[key] for key in ("mean", "diag", "full")},
                                      conventions=snakemake.params.conventions)
log.info("subject %s slice %d pixel %s", subject, sl, pixel)
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)

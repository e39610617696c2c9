"""Anomaly maps and segmentations of one evaluation's test subjects as NIfTI for viewers."""

from pathlib import Path

from brainuad.evaluation.viewer_maps import export_viewer_maps
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
i, p = snakemake.input, snakemake.params
rows = export_viewer_maps(snakemake.output[0], scores=i.scores, volumes=i.volumes, threshold=i.threshold,
                          qc_records={Path(q).name[: -len("_qc.json")]: q for q in i.qc}, raw_images=p.raw_images,
                          options=p.options, conventions=p.conventions, split=p.split, raw_space=p.raw_space)
log.info("%d subjects written to %s", len(rows), snakemake.output[0])
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)

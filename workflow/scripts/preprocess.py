"""Pre-process one subject (resample, register, brain mask, N4, crop/pad, normalise, downsample, slice crop),
or every subject of a phantom dataset (config ``jobs.preprocess: per_dataset``, params.outputs:
:func:`brainuad.data.preprocess.exclusion.preprocess_dataset`).

The manifest's flags of the subject (``registered``, ``skull_stripped``, label values, shipped brain mask)
select the steps, see :mod:`brainuad.data.preprocess`; an unusable subject is excluded unless the source
is ``strict`` (:func:`brainuad.data.preprocess.exclusion.preprocess_or_exclude`).
"""

from brainuad.data.preprocess import PreprocessOptions
from brainuad.data.preprocess.exclusion import preprocess_dataset, preprocess_or_exclude
from brainuad.utils import exit_now, log_to

log = log_to(snakemake.log[0])
p = snakemake.params
options = PreprocessOptions.from_config(p.options)
if hasattr(p, "outputs"):  # config jobs.preprocess: per_dataset -- every subject of a phantom dataset
    preprocess_dataset(snakemake.input.manifest, p.outputs, options, dataset=p.dataset, source=p.source,
                       strict=p.strict, tmpdir=snakemake.resources.get("tmpdir"), threads=snakemake.threads, log=log)
else:
    preprocess_or_exclude(
        snakemake.input.image,
        {name: snakemake.output[name] for name in ("image", "mask", "seg", "ignore", "qc")},
        options,
        dataset=snakemake.wildcards.dataset,
        subject_id=snakemake.wildcards.subject,
        source=p.source,
        strict=p.strict,
        seg_path=snakemake.input.get("seg"),
        brain_mask_path=snakemake.input.get("brain_mask"),
        tmpdir=snakemake.resources.get("tmpdir"),
        threads=snakemake.threads,
        log=log,
        **p.subject,
    )
exit_now()  # skip the interpreter's teardown (brainuad.utils.exit_now)

"""Benchmark of :func:`brainuad.data.preprocess.preprocess_subject`, step by step (plain script).

Data: ``--n`` phantom subjects of one cohort (:func:`brainuad.data.phantom.generate_cohort`, T1 and
T2, head with skull, bias, noise, pose) acquired at ``--voxel-mm``, written to a temporary folder.
Every subject is pre-processed with the workflow's settings at ``--spacing-mm``:

* 2 mm (default): the settings of ``config/config.yaml`` (crop/pad 96 x 96 x 72, downsample 1.5,
  slice crop 8 -> 64 x 64 x 32 voxels);
* 1 mm: the thesis protocol (crop/pad 192 x 192 x 160, downsample 2, slice crop 15 -> 96 x 96 x 50).

Step timings come from the QC record ``preprocess_subject`` returns (``qc["seconds"]``, wall-clock
seconds per step: load, resample, template, register, registration_qc, mask (= skull strip by the
template mask), n4, crop, normalise, downsample, slice_crop, write). The first subject also pays
the template load (nilearn file read, cached afterwards), which shows in its ``template`` step.

Usage::

    python benchmarks/bench_preprocess.py [--n 3] [--voxel-mm 2] [--spacing-mm 2] [--threads 1]
        [--sequence t1] [--cohort tumour] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

SETTINGS = {
    2.0: {"crop_pad": (96, 96, 72), "downsample": 1.5, "slice_crop": 8},
    1.0: {"crop_pad": (192, 192, 160), "downsample": 2.0, "slice_crop": 15},
}
STEPS = ("load", "resample", "template", "register", "registration_qc", "mask", "n4", "crop", "normalise",
         "downsample", "slice_crop", "write", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="phantom subjects")
    parser.add_argument("--cohort", default="tumour", help="phantom cohort (healthy, tumour, ms, stroke, wmh)")
    parser.add_argument("--sequence", default="t1", choices=("t1", "t2"))
    parser.add_argument("--voxel-mm", type=float, default=2.0, help="acquisition voxel size of the phantom")
    parser.add_argument("--spacing-mm", type=float, default=2.0, choices=sorted(SETTINGS),
                        help="pre-processing resolution (2 = workflow default, 1 = thesis)")
    parser.add_argument("--threads", type=int, default=1, help="ITK threads")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None, help="keep raw and pre-processed files here")
    args = parser.parse_args()

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    from brainuad.data.phantom import generate_cohort
    from brainuad.data.preprocess import PreprocessOptions, preprocess_subject

    work = Path(tempfile.mkdtemp(prefix="bench-preprocess-")) if args.keep is None else args.keep
    try:
        start = time.perf_counter()
        table = generate_cohort(args.cohort, args.n, work / "raw", args.seed, voxel_mm=(args.voxel_mm,) * 3,
                                template_resolution=1 if args.voxel_mm < 2 else 2)
        simulate_s = time.perf_counter() - start
        settings = SETTINGS[args.spacing_mm]
        options = PreprocessOptions(spacing_mm=args.spacing_mm, **settings)
        print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"ITK threads {args.threads}")
        print(f"# {args.n} {args.cohort} phantom subjects ({args.sequence}) at {args.voxel_mm:g} mm, "
              f"simulated in {simulate_s:.1f} s; preprocess at {args.spacing_mm:g} mm with {settings}")
        rows = []
        for rec in table.to_dict("records"):
            subject = rec["subject"]
            out = work / "out"
            seg = work / "raw" / rec["seg"] if rec["seg"] else None
            qc = preprocess_subject(
                work / "raw" / rec[args.sequence], out / f"{subject}_image.nii.gz", out / f"{subject}_mask.nii.gz",
                out / f"{subject}_seg.nii.gz", seg_path=seg, options=options, tmpdir=work, threads=args.threads,
            )
            rows.append((subject, qc["seconds"], qc["output_shape"], qc["registration_correlation_after_n4"]))
        width = max(len(s) for s in STEPS)
        print(f"{'step':<{width}} " + " ".join(f"{r[0]:>12}" for r in rows) + f" {'mean':>8}")
        for step in STEPS:
            values = [r[1].get(step, 0.0) for r in rows]
            print(f"{step:<{width}} " + " ".join(f"{v:12.3f}" for v in values) + f" {sum(values) / len(values):8.3f}")
        print(f"# output shape {rows[0][2]}; registration r after N4: "
              + ", ".join(f"{r[3]:.3f}" for r in rows))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

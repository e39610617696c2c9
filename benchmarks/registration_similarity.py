"""Registration similarity of every phantom subject of a config: does each one register to the template?

Generates the config's phantom subjects that its datasets use (sequence per dataset), pre-processes each
with the config's ``preprocess`` section and prints, per subject, ``registration_similarity`` (|r| with
the template inside its brain mask after N4, the QC column) and the brain volume, then the distribution
(min / quartiles / max) and the subjects below ``--floor``. Nothing of the workflow runs.

    PYTHONPATH=src python benchmarks/registration_similarity.py --config config/config.yaml --out /tmp/sim [--floor 0.3]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from brainuad.data.phantom import PhantomConfig, _save, simulate_subject
from brainuad.data.preprocess import PreprocessOptions, preprocess_subject


def _one(job):
    raw, out_dir, options = job
    stem = raw.name.replace(".nii.gz", "")
    start = time.perf_counter()
    qc = preprocess_subject(raw, out_dir / f"{stem}_img.nii.gz", out_dir / f"{stem}_mask.nii.gz",
                            out_dir / f"{stem}_seg.nii.gz", options=options, tmpdir=out_dir)
    similarity = abs(qc["registration_correlation_after_n4"])
    return stem, similarity, qc["brain_volume_ml"], time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--floor", type=float, default=None)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text())
    options = PreprocessOptions.from_config(config["preprocess"])
    raw_dir, out_dir = args.out / "raw", args.out / "preprocessed"
    raw_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for dataset in config["datasets"].values():
        source = config["sources"][dataset["source"]]
        if source["kind"] != "phantom":
            continue
        phantom = PhantomConfig(**source.get("options", {}))
        for index in range(1, int(source["cohorts"][dataset["cohort"]]) + 1):
            subject = f"{dataset['cohort']}-{index:03d}"
            raw = raw_dir / f"{subject}_{dataset['sequence']}.nii.gz"
            if not raw.exists():
                generated = simulate_subject(dataset["cohort"], index, int(source["seed"]), phantom)
                for contrast, image in generated.images.items():
                    _save(image, generated.affine, raw_dir / f"{subject}_{contrast}.nii.gz")
            jobs.append((raw, out_dir, options))
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(_one, jobs))
    print("subject\tsimilarity\tbrain_volume_ml\tseconds")
    for stem, similarity, volume, seconds in rows:
        print(f"{stem}\t{similarity:.3f}\t{volume:.0f}\t{seconds:.1f}")
    values = np.array([row[1] for row in rows])
    volumes = np.array([row[2] for row in rows])
    print(f"# {len(rows)} scans: similarity min {values.min():.3f}, quartiles "
          f"{' / '.join(f'{q:.3f}' for q in np.percentile(values, [25, 50, 75]))}, max {values.max():.3f}; "
          f"brain volume {volumes.min():.0f}-{volumes.max():.0f} ml; "
          f"{sum(row[3] for row in rows):.0f} s of pre-processing in all")
    if args.floor is not None:
        below = [row[0] for row in rows if row[1] < args.floor]
        print(f"# below {args.floor:g}: {', '.join(below) if below else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

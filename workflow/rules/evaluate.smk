# Evaluation (CPU): post-processing, threshold search on the unhealthy validation set, per-subject metrics.


rule evaluate:
    input:
        scores=paths.SCORES,
        recon=paths.RECON,
        volumes=paths.VOLUMES,
    output:
        threshold=paths.THRESHOLD,
        metrics=paths.METRICS,
    log:
        "logs/evaluate/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.log",
    benchmark:
        "results/benchmarks/evaluate/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    params:
        role=lambda wc: DATASETS[wc.dataset]["role"],
        options=canon(config["evaluation"]),
        samples=lambda wc: SCORINGS[wc.scoring].get("samples"),
        conventions=lambda wc: STUDY.evaluation_conventions(wc.dataset),
    script:
        "../scripts/evaluate.py"


rule viewer_maps:
    # Post-processed maps and binarised segmentations of the test subjects as NIfTI, on the pre-processed grid
    # and on the raw scans (inverse registration); target all_maps (brainuad.evaluation.viewer_maps).
    input:
        unpack(viewer_map_inputs),
    output:
        directory(paths.VIEWER_MAPS),
    log:
        "logs/viewer_maps/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.log",
    benchmark:
        "results/benchmarks/viewer_maps/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.tsv"
    conda:
        "../../envs/viewer_maps.yaml"
    params:
        options=canon(config["evaluation"]),
        conventions=lambda wc: STUDY.evaluation_conventions(wc.dataset),
        raw_images=viewer_map_raw_images,
        split=config["viewer_maps"]["split"],
        raw_space=config["viewer_maps"]["raw_space"],
    script:
        "../scripts/viewer_maps.py"

# Evaluation (CPU): post-processing, threshold search on the unhealthy validation set, per-subject metrics.
# A table row or sweep with its own `protocol` (brainuad.evaluation.overrides) is evaluated by the same rule
# into results/eval/.../<scoring>/protocol-<id>/ (rule evaluate_protocol): a changed protocol reruns only
# evaluation and what follows it, never scoring, reconstruction or training.


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
        options=lambda wc: STUDY.evaluation_options(eval_protocol(wc)),
        samples=lambda wc: SCORINGS[wc.scoring].get("samples"),
        conventions=lambda wc: STUDY.evaluation_conventions(wc.dataset),
    script:
        "../scripts/evaluate.py"


use rule evaluate as evaluate_protocol with:
    output:
        threshold=paths.PROTOCOL_THRESHOLD,
        metrics=paths.PROTOCOL_METRICS,
    log:
        "logs/evaluate/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}/protocol-{protocol}.log",
    benchmark:
        "results/benchmarks/evaluate/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}/protocol-{protocol}.tsv"


rule evaluate_fpr:
    # The thresholds calibrated on the healthy validation maps (healthy_fpr) applied to a pathology set.
    input:
        scores=paths.SCORES,
        volumes=paths.VOLUMES,
        healthy=healthy_threshold,
    output:
        paths.FPR_METRICS,
    log:
        "logs/evaluate_fpr/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.log",
    benchmark:
        "results/benchmarks/evaluate_fpr/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    params:
        options=lambda wc: STUDY.evaluation_options(eval_protocol(wc)),
        conventions=lambda wc: STUDY.evaluation_conventions(wc.dataset),
    script:
        "../scripts/evaluate_fpr.py"


use rule evaluate_fpr as evaluate_fpr_protocol with:
    output:
        paths.PROTOCOL_FPR_METRICS,
    log:
        "logs/evaluate_fpr/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}/protocol-{protocol}.log",
    benchmark:
        "results/benchmarks/evaluate_fpr/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}/protocol-{protocol}.tsv"


if STUDY.evaluate_jobs() == "per_model":
    # config jobs.evaluate: per_model (config/README.md "jobs"): one rule `evaluate__<trainset>__<model>__<run>` per
    # model and sweep run writes the files of every evaluate, evaluate_protocol, evaluate_fpr and
    # evaluate_fpr_protocol job of that model in one process (the healthy evaluations first: the FPR evaluations
    # read their thresholds); the rules above stay as the fallback for a file no group writes.
    for (_trainset, _model, _run), _jobs in STUDY.evaluate_groups().items():
        _outputs = [f for j in _jobs for f in ((j["threshold"], j["metrics"]) if j["kind"] == "evaluate" else (j["output"],))]

        rule:
            name:
                STUDY.group_rule("evaluate", _trainset, _model, _run)
            input:
                scores=sorted({j["scores"] for j in _jobs}),
                recons=sorted({j["recon"] for j in _jobs if "recon" in j}),
                volumes=sorted({j["volumes"] for j in _jobs}),
                healthy=sorted({j["healthy"] for j in _jobs if "healthy" in j} - set(_outputs)),
            output:
                _outputs,
            log:
                f"logs/evaluate/{_trainset}/{_model}/{_run}/all.log",
            benchmark:
                f"results/benchmarks/evaluate/{_trainset}/{_model}/{_run}/all.tsv"
            conda:
                "../../envs/evaluate.yaml"
            params:
                jobs=[{k: v for k, v in j.items() if k not in ("fold", "dataset", "scoring", "protocol")} for j in _jobs],
            script:
                "../scripts/evaluate.py"

        for _rule in ("evaluate", "evaluate_protocol", "evaluate_fpr", "evaluate_fpr_protocol"):
            workflow.ruleorder(STUDY.group_rule("evaluate", _trainset, _model, _run), _rule)


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

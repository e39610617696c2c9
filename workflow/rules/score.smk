# Anomaly scoring (CPU): stored reconstructions -> anomaly maps.
# config jobs.score (config/README.md "jobs"): per_scoring = rule `score`, one job per trained model, dataset and
# scoring; per_model = one rule `score__<trainset>__<model>__<run>` per model and sweep run that writes the same
# files for all its folds, datasets and scorings in one process (the demo: fewer interpreter start-ups; a
# change to one scoring or dataset of that model reruns all of them). Rule `score` stays as the fallback for a
# file no group writes (ruleorder: the group rule wins where both match).


rule score:
    input:
        recon=paths.RECON,
        volumes=paths.VOLUMES,
    output:
        paths.SCORES,
    log:
        "logs/score/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.log",
    benchmark:
        "results/benchmarks/score/{trainset}/{model}/{run}/fold-{fold}/{dataset}/{scoring}.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        scoring=lambda wc: STUDY.scoring_params(wc.scoring),  # entry + SSIM conventions of SSIM scorings
    script:
        "../scripts/score.py"


if STUDY.score_jobs() == "per_model":
    for (_trainset, _model, _run), _jobs in STUDY.score_groups().items():

        rule:
            name:
                STUDY.group_rule("score", _trainset, _model, _run)
            input:
                recons=sorted({j["recon"] for j in _jobs}),
                volumes=sorted({j["volumes"] for j in _jobs}),
            output:
                [j["output"] for j in _jobs],
            log:
                f"logs/score/{_trainset}/{_model}/{_run}/all.log",
            benchmark:
                f"results/benchmarks/score/{_trainset}/{_model}/{_run}/all.tsv"
            conda:
                "../../envs/torch.yaml"
            params:
                jobs=[{"scoring": j["params"], "recon": j["recon"], "volumes": j["volumes"], "output": j["output"]}
                      for j in _jobs],
            script:
                "../scripts/score.py"

        workflow.ruleorder(STUDY.group_rule("score", _trainset, _model, _run), "score")

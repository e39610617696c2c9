# Training (GPU on a cluster): one job per training set x model x run x fold, after the optional
# self-supervised pre-training of a cDDPM encoder (models with a `pretrain` section).
# Resumable state lives under work/ (not a declared output, so Snakemake never deletes it).
# config jobs.train (config/README.md): per_fold = the rules below, one job per fold; per_model = in addition one
# rule `<rule>__<trainset>__<model>__<run>` per model and sweep run (end of this file) whose single job trains
# every fold the run needs and writes the same files (the demo: fewer interpreter and torch start-ups; a change
# to one fold of that model retrains all its folds). ruleorder puts them first; the per-fold rules stay as the
# producer of a model file outside every group (e.g. a model.pt asked for on the command line).


rule pretrain_encoder:
    input:
        volumes=paths.fill(paths.VOLUMES, dataset="{trainset}"),
        splits=paths.fill(paths.SPLITS, dataset="{trainset}"),
    output:
        encoder=paths.ENCODER,
        log=paths.PRETRAIN_LOG,
    log:
        "logs/pretrain_encoder/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/pretrain_encoder/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=12 * 60,
    params:
        arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
        hparams=model_hparams,
        settings=pretrain_settings,
        device=config["device"],
        workdir=paths.PRETRAIN_WORKDIR,
    script:
        "../scripts/pretrain_encoder.py"


rule train:
    wildcard_constraints:
        model=model_alternatives(stage2=False),
    input:
        unpack(pretrain_input),
        volumes=paths.fill(paths.VOLUMES, dataset="{trainset}"),
        splits=paths.fill(paths.SPLITS, dataset="{trainset}"),
    output:
        model=paths.MODEL,
        log=paths.TRAIN_LOG,
    log:
        "logs/train/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/train/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
        hparams=model_hparams,
        settings=train_settings,
        workdir=paths.TRAIN_WORKDIR,
        device=config["device"],
    script:
        "../scripts/train.py"


# SADM Stage II (P8.6): a segmentation Unet on top of the frozen Stage I model of the same training set and
# fold. The Stage I model.pt is an input (retraining Stage I retrains Stage II); the scoring weight beta is a
# scoring parameter (changing it reruns scoring onward only).
rule train_stage2:
    wildcard_constraints:
        model=model_alternatives(stage2=True),
    input:
        unpack(stage2_inputs),
    output:
        model=paths.MODEL,
        log=paths.TRAIN_LOG,
    log:
        "logs/train_stage2/{trainset}/{model}/{run}/fold-{fold}.log",
    benchmark:
        "results/benchmarks/train_stage2/{trainset}/{model}/{run}/fold-{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
        hparams=model_hparams,
        stage1=lambda wc: STUDY.stage1_params(wc.model),
        data=lambda wc: STUDY.stage2_data(wc.model),
        settings=train_settings,
        workdir=paths.TRAIN_WORKDIR,
        device=config["device"],
    script:
        "../scripts/train_stage2.py"


# ---------------------------------------------------------------- jobs.train: per_model
if STUDY.train_jobs() == "per_model":
    _per_model = {"pretrain_encoder": [], "train": [], "train_stage2": []}

    for (_rule, _trainset, _model, _run), _jobs in STUDY.train_groups("pretrain_encoder").items():

        rule:
            name:
                STUDY.group_rule(_rule, _trainset, _model, _run)
            input:
                volumes=sorted({j["volumes"] for j in _jobs}),
                splits=sorted({j["splits"] for j in _jobs}),
            output:
                [f for j in _jobs for f in (j["encoder"], j["log"])],
            log:
                f"logs/pretrain_encoder/{_trainset}/{_model}/{_run}/all.log",
            benchmark:
                f"results/benchmarks/pretrain_encoder/{_trainset}/{_model}/{_run}/all.tsv"
            conda:
                "../../envs/torch.yaml"
            threads: 1
            resources:
                gpu=1,
                mem_mb=16000,
                runtime=12 * 60 * len(_jobs),
            params:
                arch=STUDY.model_entry(_model)["arch"],
                hparams=STUDY.model_hparams(_model, _run),
                jobs=[{k: j[k] for k in ("fold", "settings", "volumes", "splits", "encoder", "log", "workdir")}
                      for j in _jobs],
                device=config["device"],
            script:
                "../scripts/pretrain_encoder.py"

        _per_model[_rule].append(STUDY.group_rule(_rule, _trainset, _model, _run))

    for (_rule, _trainset, _model, _run), _jobs in STUDY.train_groups("train").items():

        rule:
            name:
                STUDY.group_rule(_rule, _trainset, _model, _run)
            input:
                encoders=sorted({j["encoder"] for j in _jobs if j["encoder"]}),
                volumes=sorted({j["volumes"] for j in _jobs}),
                splits=sorted({j["splits"] for j in _jobs}),
            output:
                [f for j in _jobs for f in (j["model"], j["log"])],
            log:
                f"logs/train/{_trainset}/{_model}/{_run}/all.log",
            benchmark:
                f"results/benchmarks/train/{_trainset}/{_model}/{_run}/all.tsv"
            conda:
                "../../envs/torch.yaml"
            threads: 1
            resources:
                gpu=1,
                mem_mb=16000,
                runtime=24 * 60 * len(_jobs),
            params:
                arch=STUDY.model_entry(_model)["arch"],
                hparams=STUDY.model_hparams(_model, _run),
                jobs=[{k: j[k] for k in ("fold", "settings", "volumes", "splits", "encoder", "model", "log", "workdir")}
                      for j in _jobs],
                device=config["device"],
            script:
                "../scripts/train.py"

        _per_model[_rule].append(STUDY.group_rule(_rule, _trainset, _model, _run))

    for (_rule, _trainset, _model, _run), _jobs in STUDY.train_groups("train_stage2").items():

        rule:
            name:
                STUDY.group_rule(_rule, _trainset, _model, _run)
            input:
                stage1=[j["stage1"] for j in _jobs],
                volumes=sorted({j["volumes"] for j in _jobs}),
                splits=sorted({j["splits"] for j in _jobs}),
            output:
                [f for j in _jobs for f in (j["model"], j["log"])],
            log:
                f"logs/train_stage2/{_trainset}/{_model}/{_run}/all.log",
            benchmark:
                f"results/benchmarks/train_stage2/{_trainset}/{_model}/{_run}/all.tsv"
            conda:
                "../../envs/torch.yaml"
            threads: 1
            resources:
                gpu=1,
                mem_mb=16000,
                runtime=24 * 60 * len(_jobs),
            params:
                arch=STUDY.model_entry(_model)["arch"],
                hparams=STUDY.model_hparams(_model, _run),
                stage1=STUDY.stage1_params(_model),
                data=STUDY.stage2_data(_model),
                jobs=[{k: j[k] for k in ("fold", "settings", "stage1", "volumes", "splits", "model", "log", "workdir")}
                      for j in _jobs],
                device=config["device"],
            script:
                "../scripts/train_stage2.py"

        _per_model[_rule].append(STUDY.group_rule(_rule, _trainset, _model, _run))

    # a file of a per-model rule comes from that rule; the per-fold rule makes only files outside every group
    for _rule, _names in _per_model.items():
        if _names:
            workflow.ruleorder(*_names, _rule)

# Reconstruction (GPU on a cluster): every evaluation volume of a dataset through one trained model.
# Stored, so new scores, post-processing and threshold protocols never touch a GPU again.
# config jobs.reconstruct (config/README.md): per_dataset = rule `reconstruct`, one job per trained model
# and dataset; per_model = one rule `reconstruct__<trainset>__<model>__<run>` per model and sweep run that
# writes the same files for all its folds and datasets in one process (the demo: fewer interpreter and
# torch start-ups; a change to one fold or dataset of that model reruns all of them).


if STUDY.reconstruct_jobs() == "per_dataset":

    rule reconstruct:
        input:
            model=model_input,
            volumes=paths.VOLUMES,
            splits=paths.SPLITS,
        output:
            paths.RECON,
        log:
            "logs/reconstruct/{trainset}/{model}/{run}/fold-{fold}/{dataset}.log",
        benchmark:
            "results/benchmarks/reconstruct/{trainset}/{model}/{run}/fold-{fold}/{dataset}.tsv"
        conda:
            "../../envs/torch.yaml"
        threads: 1  # torch intra-op threads; the SLURM profile raises it (set-threads)
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=120,
        params:
            arch=lambda wc: STUDY.model_entry(wc.model)["arch"],
            hparams=model_hparams,
            settings=reconstruct_settings,
            role=lambda wc: DATASETS[wc.dataset]["role"],
            seed=config["seed"],
            device=config["device"],
        script:
            "../scripts/reconstruct.py"

else:
    for (_trainset, _model, _run), _jobs in STUDY.recon_groups().items():

        rule:
            name:
                STUDY.group_rule("reconstruct", _trainset, _model, _run)
            input:
                models=sorted({j["model_file"] for j in _jobs if j["model_file"]}),
                volumes=sorted({j["volumes"] for j in _jobs}),
                splits=sorted({j["splits"] for j in _jobs}),
            output:
                [j["output"] for j in _jobs],
            log:
                f"logs/reconstruct/{_trainset}/{_model}/{_run}/all.log",
            benchmark:
                f"results/benchmarks/reconstruct/{_trainset}/{_model}/{_run}/all.tsv"
            conda:
                "../../envs/torch.yaml"
            threads: 1
            resources:
                gpu=1,
                mem_mb=16000,
                runtime=120 * len(_jobs),
            params:
                arch=STUDY.model_entry(_model)["arch"],
                hparams=STUDY.model_hparams(_model, _run),
                settings=STUDY.reconstruct_settings(_model, _run),
                jobs=[{k: j[k] for k in ("fold", "role", "model_file", "volumes", "splits", "output")} for j in _jobs],
                seed=config["seed"],
                device=config["device"],
            script:
                "../scripts/reconstruct.py"

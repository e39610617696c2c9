# Config loading, validation, wildcard constraints and path helpers shared by all rules.

import copy
import functools
import re
import sys
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import Paramspace, validate


sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from brainuad.catalog import LEARNING_FREE  # noqa: E402  (torch-free)
from brainuad.paths import eval_dir  # noqa: E402
from brainuad import paths  # noqa: E402

validate(config, "../schemas/config.schema.yaml")

DATASETS = config["datasets"]
MODELS = config["models"]
SWEEPS = config.get("scoring_sweeps", {})


def sweep_value_id(sweep, value):
    """Scoring id of one value of a scoring sweep, e.g. ``ssim@sigma=0.5``; the base scoring's own id
    when the value is the one the base scoring already uses (nothing is computed twice)."""
    base = config["scorings"][sweep["scoring"]]
    if base.get(sweep["param"]) == value:
        return sweep["scoring"]
    return f"{sweep['scoring']}@{sweep['param']}={value}"


def _expand_scorings():
    """The configured scorings plus one generated scoring per value of every scoring sweep."""
    scorings = dict(config["scorings"])
    for name, sweep in SWEEPS.items():
        if sweep["scoring"] not in scorings:
            raise ValueError(f"config error: scoring_sweeps.{name}.scoring {sweep['scoring']!r} is not under scorings")
        for value in sweep["values"]:
            scorings[sweep_value_id(sweep, value)] = {**config["scorings"][sweep["scoring"]], sweep["param"]: value}
    return scorings


SCORINGS = _expand_scorings()
TABLES = config["tables"]
FOLDS = list(range(config["splits"]["folds"]))
RUN = "default"
MODEL_SWEEPS = config.get("sweeps", {})
OVERRIDE_SECTIONS = ("hparams", "train", "reconstruct")


def _sweep_table_path(name, spec):
    """A sweep table path as given, else relative to the working directory, else to the workflow folder."""
    path = Path(spec["table"])
    if path.is_absolute() or path.exists():
        return path
    return Path(workflow.basedir) / path


def _read_sweep(name, spec):
    """Rows of one model sweep table -> {run id: {"section.key": value}} via snakemake.utils.Paramspace.

    Each TSV row is one run; its id is Paramspace's instance pattern (``col~value`` joined by ``__``),
    so the run wildcard names exactly what changed and editing one row reruns that row only."""
    path = _sweep_table_path(name, spec)
    if not path.exists():
        raise ValueError(f"config error: sweeps.{name}.table: {path} does not exist")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except Exception as err:
        raise ValueError(f"config error: sweeps.{name}.table: {path} is not a readable TSV ({err})")
    if df.empty:
        raise ValueError(f"config error: sweeps.{name}.table: {path} has no rows")
    for col in df.columns:
        if col not in spec["set"]:
            raise ValueError(f"config error: {path}: column {col!r} is not mapped under sweeps.{name}.set")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", col) or "__" in col:
            raise ValueError(f"config error: {path}: column {col!r} must be a plain name (letters, digits, single _)")
    space = Paramspace(df, filename_params="*", param_sep="~", filename_sep="__")
    runs = {}
    for (_, row), run in zip(df.iterrows(), space.instance_patterns):
        if not re.fullmatch(r"[A-Za-z0-9_.+~=-]+", run):
            raise ValueError(f"config error: {path}: row {dict(row)} gives the run id {run!r}; "
                             "values may hold only letters, digits and . + - =")
        if run in runs:
            raise ValueError(f"config error: {path}: duplicate row {dict(row)}")
        runs[run] = {spec["set"][col]: yaml.safe_load(row[col]) for col in df.columns}
    return runs


def _collect_runs():
    """{(model, run): overrides} for every model sweep row; "default" has none."""
    runs = {}
    for name, spec in MODEL_SWEEPS.items():
        for key in spec["set"].values():
            if key.split(".")[0] not in OVERRIDE_SECTIONS or "." not in key:
                sections = ", ".join(f"{section}." for section in OVERRIDE_SECTIONS)
                raise ValueError(f"config error: sweeps.{name}.set: {key!r} must start with one of {sections}")
        for model in spec["models"]:
            if model not in MODELS:
                raise ValueError(f"config error: sweeps.{name}.models: unknown model {model!r}")
            for run, overrides in _read_sweep(name, spec).items():
                if runs.get((model, run), overrides) != overrides:
                    raise ValueError(f"config error: sweeps.{name}: run {run!r} of {model} means different "
                                     "settings in two sweeps; rename a column")
                runs[(model, run)] = overrides
    return runs


RUNS = _collect_runs()
RUN_IDS = sorted({run for _, run in RUNS} | {RUN})
LIB = [str(p) for p in sorted(Path(workflow.basedir).glob("src/brainuad/**/*.py"))]


def canon(obj):
    """Recursively key-sorted copy of a config value, so that params (which Snakemake compares as text)
    do not change when keys are merely reordered in a YAML file."""
    if isinstance(obj, dict):
        return {k: canon(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canon(v) for v in obj]
    return obj


def _config_error(msg):
    raise ValueError(f"config error: {msg}")


def _check_config():
    """Cross-references the schema cannot express."""
    for name, ds in DATASETS.items():
        if ds["source"] not in config["sources"]:
            _config_error(f"datasets.{name}.source '{ds['source']}' is not defined under sources")
        if ds["role"] == "pathology":
            ts = ds.get("trainset")
            if ts not in DATASETS or DATASETS[ts]["role"] != "healthy":
                _config_error(f"datasets.{name}.trainset must name a healthy dataset, got {ts!r}")
            if DATASETS[ts]["sequence"] != ds["sequence"]:
                _config_error(
                    f"datasets.{name} ({ds['sequence']}) is evaluated with models trained on "
                    f"{ts} ({DATASETS[ts]['sequence']}); sequences must match"
                )
    for sname, sweep in SWEEPS.items():
        for key in ("model", "reference_model"):
            if key in sweep and sweep[key] not in MODELS:
                _config_error(f"scoring_sweeps.{sname}.{key}: unknown model {sweep[key]!r}")
        if sweep.get("reference") and sweep["reference"] not in config["scorings"]:
            _config_error(f"scoring_sweeps.{sname}.reference: unknown scoring {sweep['reference']!r}")
        for ds in sweep["datasets"]:
            if ds not in DATASETS or DATASETS[ds]["role"] != "pathology":
                _config_error(f"scoring_sweeps.{sname}: {ds!r} is not a pathology dataset")
    for sname, spec in MODEL_SWEEPS.items():
        if sname in SWEEPS:
            _config_error(f"sweeps.{sname}: the name is also a scoring sweep; sweep names must be unique")
        if spec.get("x") and spec["x"] not in spec["set"]:
            _config_error(f"sweeps.{sname}.x: {spec['x']!r} is not a column under set")
        if spec.get("scoring", "l1") not in SCORINGS:
            _config_error(f"sweeps.{sname}.scoring: unknown scoring {spec.get('scoring')!r}")
        if spec.get("reference") not in (None, RUN):
            _config_error(f"sweeps.{sname}.reference: only {RUN!r} (the configured model) can be the reference")
        for ds in spec["datasets"]:
            if ds not in DATASETS or DATASETS[ds]["role"] != "pathology":
                _config_error(f"sweeps.{sname}: {ds!r} is not a pathology dataset")
    mf = config["report"].get("mhd_figure")
    if mf:
        if mf["model"] not in MODELS or mf["dataset"] not in DATASETS:
            _config_error("report.mhd_figure: unknown model or dataset")
        for key in ("mean", "diag", "full"):
            if mf["scorings"][key] not in config["scorings"]:
                _config_error(f"report.mhd_figure.scorings.{key}: unknown scoring {mf['scorings'][key]!r}")
    for tname, table in TABLES.items():
        for row in table["rows"]:
            if row["model"] not in MODELS:
                _config_error(f"tables.{tname}: unknown model {row['model']!r}")
            if row.get("scoring", "l1") not in SCORINGS:
                _config_error(f"tables.{tname}: unknown scoring {row.get('scoring')!r}")
        for ds in table["datasets"]:
            if ds not in DATASETS:
                _config_error(f"tables.{tname}: unknown dataset {ds!r}")
            want = "healthy" if table["kind"] == "reconstruction" else "pathology"
            if DATASETS[ds]["role"] != want:
                _config_error(f"tables.{tname} ({table['kind']}) needs {want} datasets, {ds!r} is {DATASETS[ds]['role']}")


_check_config()


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    trainset=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    scoring=_alternatives(SCORINGS),
    source=_alternatives(config["sources"]),
    fold=r"\d+",
    run=_alternatives(RUN_IDS),
    subject=r"[A-Za-z0-9_.+-]+",
    cohort=r"[A-Za-z0-9_]+",


# ---------------------------------------------------------------- datasets and subjects
def trainset_of(dataset):
    return paths.trainset_of(dataset, DATASETS)


def raw_dir(wildcards):
    ds = DATASETS[wildcards.dataset]
    return f"results/raw/{ds['source']}/{ds['cohort']}"


@functools.lru_cache(maxsize=None)
def _manifest(path, mtime):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def manifest_table(dataset):
    path = checkpoints.manifest.get(dataset=dataset).output[0]
    return _manifest(path, Path(path).stat().st_mtime)


def raw_subject_files(wildcards):
    table = manifest_table(wildcards.dataset)
    row = table[table["subject"] == wildcards.subject]
    if row.empty:
        raise ValueError(f"subject {wildcards.subject} is not in the manifest of {wildcards.dataset}")
    files = {"image": row["image"].iloc[0]}
    if row["seg"].iloc[0]:
        files["seg"] = row["seg"].iloc[0]
    return files


def preprocessed_files(wildcards):
    subjects = manifest_table(wildcards.dataset)["subject"]
    return {
        kind: expand(f"results/data/{wildcards.dataset}/nifti/{{subject}}_{kind}.nii.gz", subject=subjects)
        for kind in ("image", "mask", "seg")
    }


# ---------------------------------------------------------------- models
def model_entry(model, run=RUN):
    """The model's config entry with the overrides of sweep row ``run`` applied."""
    entry = MODELS[model]
    overrides = RUNS.get((model, run), {})
    if run != RUN and (model, run) not in RUNS:
        raise ValueError(f"run {run!r} is not a sweep row of model {model!r}")
    if not overrides:
        return entry
    entry = copy.deepcopy(entry)
    for key, value in overrides.items():
        section, field = key.split(".", 1)
        entry.setdefault(section, {})[field] = value
    return entry


def train_run(model, run):
    """The run whose trained weights ``run`` uses: rows that only change reconstruction settings
    (e.g. t_test) reuse the default run's model instead of training again."""
    overrides = RUNS.get((model, run), {})
    if any(key.split(".")[0] in ("hparams", "train") for key in overrides):
        return run
    return RUN


def is_trainable(model):
    return model_entry(model)["arch"] not in LEARNING_FREE


def model_hparams(wildcards):
    return canon(model_entry(wildcards.model, wildcards.run).get("hparams", {}))


def train_settings(wildcards):
    settings = {"seed": config["seed"] + int(wildcards.fold)}
    settings.update(model_entry(wildcards.model, wildcards.run).get("train", {}))
    return canon(settings)


def reconstruct_settings(wildcards):
    settings = dict(config["reconstruct"])
    settings.update(model_entry(wildcards.model, wildcards.run).get("reconstruct", {}))
    return canon(settings)


def model_input(wildcards):
    if not is_trainable(wildcards.model):
        return []
    run = train_run(wildcards.model, wildcards.run)
    return f"results/models/{wildcards.trainset}/{wildcards.model}/{run}/fold-{wildcards.fold}/model.pt"


# ---------------------------------------------------------------- targets
def table_metric_files(table_name):
    table = TABLES[table_name]
    files = []
    for row in table["rows"]:
        for ds in table["datasets"]:
            for fold in FOLDS:
                d = eval_dir(trainset_of(ds), row["model"], row.get("run", RUN), fold, ds, row.get("scoring", "l1"))
                files += [f"{d}/metrics.tsv", f"{d}/threshold.json"]
    return files


def table_input(wildcards):
    return table_metric_files(wildcards.table)


def all_table_files():
    return expand("results/tables/{table}.{ext}", table=TABLES, ext=["tsv", "md", "tex"])


def all_model_files():
    files = set()
    for table in TABLES.values():
        for row in table["rows"]:
            if is_trainable(row["model"]):
                for ds in table["datasets"]:
                    for fold in FOLDS:
                        files.add(f"results/models/{trainset_of(ds)}/{row['model']}/{row.get('run', RUN)}/fold-{fold}/model.pt")
    return sorted(files)


def train_logs():
    return [f.replace("model.pt", "train_log.tsv") for f in all_model_files()]


def qualitative_inputs():
    spec = config["report"]["qualitative"]
    table = TABLES[spec["table"]]
    files = []
    for row in table["rows"]:
        for ds in table["datasets"]:
            d = f"{trainset_of(ds)}/{row['model']}/{row.get('run', RUN)}/fold-{spec['fold']}"
            files.append(f"results/scores/{d}/{ds}/{row.get('scoring', 'l1')}.npz")
            files.append(f"{eval_dir(trainset_of(ds), row['model'], row.get('run', RUN), spec['fold'], ds, row.get('scoring', 'l1'))}/threshold.json")
            if not is_trainable(row["model"]):
                continue
            files.append(f"results/recon/{d}/{ds}.npz")
    return sorted(set(files))


# ---------------------------------------------------------------- sweeps and the MHD figure
ALL_SWEEPS = [*SWEEPS, *MODEL_SWEEPS]


def sweep_ids(wildcards):
    """Scoring ids of a scoring sweep's values ([] for a model sweep)."""
    sweep = SWEEPS.get(wildcards.sweep)
    return [sweep_value_id(sweep, v) for v in sweep["values"]] if sweep else []


def sweep_points(wildcards):
    """Model sweep: one ``{"run", "value"}`` per table row, value = the row's x column ([] for a scoring sweep)."""
    spec = MODEL_SWEEPS.get(wildcards.sweep)
    if not spec:
        return []
    x = spec.get("x") or next(iter(spec["set"]))
    runs = _read_sweep(wildcards.sweep, spec)
    return [{"run": run, "value": overrides[spec["set"][x]]} for run, overrides in runs.items()]


def _eval_files(model, run, scoring, datasets):
    files = []
    for ds in datasets:
        for fold in FOLDS:
            d = eval_dir(trainset_of(ds), model, run, fold, ds, scoring)
            files += [f"{d}/metrics.tsv", f"{d}/threshold.json"]
    return files


def sweep_inputs(wildcards):
    if wildcards.sweep in MODEL_SWEEPS:
        spec = MODEL_SWEEPS[wildcards.sweep]
        runs = [pt["run"] for pt in sweep_points(wildcards)] + ([spec["reference"]] if spec.get("reference") else [])
        return [f for model in spec["models"] for run in runs
                for f in _eval_files(model, run, spec.get("scoring", "l1"), spec["datasets"])]
    sweep = SWEEPS[wildcards.sweep]
    ids = sweep_ids(wildcards) + ([sweep["reference"]] if sweep.get("reference") else [])
    return [f for sid in ids for f in _eval_files(sweep["model"], RUN, sid, sweep["datasets"])]


def all_sweep_files():
    return expand("results/figures/sweep_{sweep}.png", sweep=ALL_SWEEPS) + expand(
        "results/tables/sweep_{sweep}.tsv", sweep=ALL_SWEEPS)


def mhd_figure_inputs():
    mf = config["report"].get("mhd_figure")
    if not mf:
        return {}
    ds, model, fold = mf["dataset"], mf["model"], mf.get("fold", 0)
    base = f"{trainset_of(ds)}/{model}/{RUN}/fold-{fold}"
    files = {key: f"results/scores/{base}/{ds}/{sid}.npz" for key, sid in mf["scorings"].items()}
    files["recon"] = f"results/recon/{base}/{ds}.npz"
    files["threshold"] = f"{eval_dir(trainset_of(ds), model, RUN, fold, ds, mf['scorings']['full'])}/threshold.json"
    files["volumes"] = f"results/data/{ds}/volumes.npz"
    return files


def report_figures():
    figs = ["results/figures/qualitative.png", "results/figures/training_curves.png"]
    if config["report"].get("mhd_figure"):
        figs.append("results/figures/mhd.png")
    return figs + expand("results/figures/sweep_{sweep}.png", sweep=ALL_SWEEPS)

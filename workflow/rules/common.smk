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
from brainuad.reporting.tables import row_label  # noqa: E402  (numpy/pandas only)
from brainuad import paths  # noqa: E402

validate(config, "../schemas/config.schema.yaml")

DATASETS = config["datasets"]
MODELS = config["models"]


# what a ``weights_from`` model (e.g. an ENS variant) takes from its source and may not change
WEIGHT_KEYS = ("arch", "hparams", "train", "pretrain")


def _inherit_weights_from(models):
    """A ``weights_from`` model takes the WEIGHT_KEYS sections of its source."""
    for entry in models.values():
        source = models.get(entry.get("weights_from"))
        for key in WEIGHT_KEYS:
            if source is not None and not entry.get(key) and key in source:  # absent or a schema default {}
                entry[key] = copy.deepcopy(source[key])


_inherit_weights_from(MODELS)
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


def _qualitative_specs():
    """report.qualitative as {table: spec}; the key takes one {table, fold} mapping or a list of them."""
    specs = config["report"]["qualitative"]
    specs = specs if isinstance(specs, list) else [specs]
    return {spec["table"]: {"fold": 0, **spec} for spec in specs}


QUALITATIVE = _qualitative_specs()


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
    for mname, entry in MODELS.items():
        source = entry.get("weights_from")
        if source is None:
            continue
        if source not in MODELS or MODELS[source].get("weights_from"):
            _config_error(f"models.{mname}.weights_from: {source!r} must name a model that trains its own weights")
        for key in WEIGHT_KEYS:
            if entry.get(key, MODELS[source].get(key)) != MODELS[source].get(key):
                _config_error(f"models.{mname}.{key} differs from models.{source}.{key}; a weights_from model may "
                              "change only label and reconstruct settings")
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
    dsh = config["report"].get("domain_shift")
    if dsh:
        if DATASETS.get(dsh["trainset"], {}).get("role") != "healthy":
            _config_error(f"report.domain_shift.trainset: {dsh['trainset']!r} is not a healthy dataset")
        for m in dsh["models"]:
            if m not in MODELS or MODELS[m]["arch"] in LEARNING_FREE:
                _config_error(f"report.domain_shift.models: {m!r} is not a trainable model")
    for table in QUALITATIVE:
        if table not in TABLES or TABLES[table].get("kind", "segmentation") != "segmentation":
            _config_error(f"report.qualitative: {table!r} is not a segmentation table")
    it = config["report"].get("inference_time")
    if it and it["table"] not in TABLES:
        _config_error(f"report.inference_time.table: unknown table {it['table']!r}")
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

# preprocess keys that fix the output grid: a pathology set must match its training set in these
GRID_KEYS = ("spacing_mm", "crop_pad", "downsample", "slice_crop")


def source_of(dataset):
    return config["sources"][DATASETS[dataset]["source"]]


def preprocess_options(dataset):
    """The preprocess section with the overrides of the dataset's source applied."""
    return {**config["preprocess"], **source_of(dataset).get("preprocess", {})}


def _check_sources():
    """Data sources: cohorts, adapter options and per-source preprocess overrides (parse time: reads the
    config only; the raw data are first opened by the manifest job)."""
    import jsonschema

    schema = yaml.safe_load((Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml").read_text())
    preprocess_schema = jsonschema.Draft202012Validator(schema["properties"]["preprocess"])
    for sname, src in config["sources"].items():
        for key in ("sequence", "strict"):
            if src["kind"] != "phantom" and key in src.get("options", {}):
                _config_error(f"sources.{sname}.options.{key}: set it as "
                              + ("datasets.<name>.sequence" if key == "sequence" else f"sources.{sname}.strict"))
        if src.get("preprocess"):
            merged = {**config["preprocess"], **src["preprocess"]}
            for error in preprocess_schema.iter_errors(merged):
                where = ".".join(str(p) for p in error.absolute_path)
                _config_error(f"sources.{sname}.preprocess.{where}: {error.message}")
    for name, ds in DATASETS.items():
        src = source_of(name)
        cohorts = src.get("cohorts", {})
        if src["kind"] == "phantom":
            if ds["cohort"] not in cohorts:
                _config_error(f"datasets.{name}.cohort {ds['cohort']!r} is not a cohort of sources.{ds['source']} "
                              f"({', '.join(cohorts) or 'none'})")
        elif ds["cohort"] != "all" and ds["cohort"] not in cohorts:
            _config_error(f"datasets.{name}.cohort {ds['cohort']!r}: use 'all' or a key of "
                          f"sources.{ds['source']}.cohorts ({', '.join(cohorts) or 'none defined'})")
        ts = ds.get("trainset")
        if ds["role"] == "pathology" and ts in DATASETS:
            mine, theirs = preprocess_options(name), preprocess_options(ts)
            for key in GRID_KEYS:
                if mine.get(key) != theirs.get(key):
                    _config_error(f"datasets.{name}: preprocess {key} {mine.get(key)} differs from that of its "
                                  f"trainset {ts} ({theirs.get(key)}); the volumes must have the same grid")


_check_sources()


def _alternatives(names):
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


wildcard_constraints:
    dataset=_alternatives(DATASETS),
    trainset=_alternatives(DATASETS),
    model=_alternatives(MODELS),
    scoring=_alternatives(SCORINGS),
    table=_alternatives(TABLES),
    source=_alternatives(config["sources"]),
    fold=r"\d+",
    run=_alternatives(RUN_IDS),
    subject=r"[A-Za-z0-9_.+-]+",
    cohort=r"[A-Za-z0-9_]+",


# ---------------------------------------------------------------- datasets and subjects
def trainset_of(dataset):
    return paths.trainset_of(dataset, DATASETS)


def raw_dir(wildcards):
    """Phantom: the generated cohort folder. Real data: no input file (the raw data are outside the
    workflow; the manifest job scans them and records a checksum of every file)."""
    ds = DATASETS[wildcards.dataset]
    if source_of(wildcards.dataset)["kind"] != "phantom":
        return []
    return f"results/raw/{ds['source']}/{ds['cohort']}"


def scan_settings(dataset):
    """Adapter call of a real-data dataset: kind, absolute root, options (source options, then the cohort's,
    then the dataset's sequence), strict."""
    ds, src = DATASETS[dataset], source_of(dataset)
    if src["kind"] == "phantom":
        return {"kind": "phantom"}
    options = {**src.get("options", {}), **src.get("cohorts", {}).get(ds["cohort"], {})}
    options.setdefault("source", ds["source"])
    root = Path(src["root"]).expanduser()
    return {"kind": src["kind"], "root": str(root if root.is_absolute() else Path.cwd() / root),
            "options": options, "strict": bool(src.get("strict", False))}


@functools.lru_cache(maxsize=None)
def _manifest(path, mtime):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def manifest_table(dataset):
    path = checkpoints.manifest.get(dataset=dataset).output[0]
    return _manifest(path, Path(path).stat().st_mtime)


@functools.lru_cache(maxsize=None)
def _manifest_rows(path, mtime):
    """{subject: row dict} of a manifest (one dict lookup per job instead of a table scan: thousands of
    subjects are planned per run)."""
    return {row["subject"]: row for row in _manifest(path, mtime).to_dict("records")}


def manifest_row(dataset, subject):
    path = checkpoints.manifest.get(dataset=dataset).output[0]
    rows = _manifest_rows(path, Path(path).stat().st_mtime)
    if subject not in rows:
        raise ValueError(f"subject {subject} is not in the manifest of {dataset}")
    return rows[subject]


def raw_subject_files(wildcards):
    row = manifest_row(wildcards.dataset, wildcards.subject)
    files = {"image": row["image"]}
    if row["seg"]:
        files["seg"] = row["seg"]
    if row.get("brain_mask"):
        files["brain_mask"] = row["brain_mask"]
    return files


def subject_flags(wildcards):
    """Manifest flags of one subject, handed to preprocessing (phantom manifests have none, so defaults)."""
    row = manifest_row(wildcards.dataset, wildcards.subject)
    return {
        "registered": str(row.get("registered", "")).lower() == "true",
        "skull_stripped": str(row.get("skull_stripped", "")).lower() == "true",
        "lesion_values": str(row.get("seg_lesion_values", "")),
        "ignore_values": str(row.get("seg_ignore_values", "")),
    }


def preprocessed_files(wildcards):
    subjects = manifest_table(wildcards.dataset)["subject"]
    files = {
        kind: expand(f"results/data/{wildcards.dataset}/nifti/{{subject}}_{kind}.nii.gz", subject=subjects)
        for kind in ("image", "mask", "seg", "ignore")
    }
    files["qc"] = expand(f"results/data/{wildcards.dataset}/nifti/{{subject}}_qc.json", subject=subjects)
    return files


def qc_inputs(wildcards):
    """QC inputs of a dataset -- every subject's QC record, the pack and the manifest's exclusions."""
    return {
        "qc": preprocessed_files(wildcards)["qc"],
        "volumes": f"results/data/{wildcards.dataset}/volumes.npz",
        "exclusions": f"results/data/{wildcards.dataset}/exclusions.tsv",
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
    for key, value in overrides.items():  # "section.key[.subkey...]"
        *parents, field = key.split(".")
        node = entry
        for part in parents:
            node = node.setdefault(part, {})
        node[field] = value
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


def weights_model(model):
    """The model whose trained weights ``model`` uses: itself, or ``weights_from`` (e.g. an ENS variant that
    only changes the test-time noise levels of an already trained diffusion model)."""
    return model_entry(model).get("weights_from", model)


def model_input(wildcards):
    if not is_trainable(wildcards.model):
        return []
    run = train_run(wildcards.model, wildcards.run)
    source = weights_model(wildcards.model)
    return f"results/models/{wildcards.trainset}/{source}/{run}/fold-{wildcards.fold}/model.pt"


def pretrain_input(wildcards):
    """``{"encoder": path}`` of the SSL-pretrained encoder a model's training consumes (models with a
    ``pretrain`` section), else ``{}``."""
    if not model_entry(wildcards.model, wildcards.run).get("pretrain"):
        return {}
    return {"encoder": f"results/models/{wildcards.trainset}/{wildcards.model}/{wildcards.run}/fold-{wildcards.fold}/encoder.pt"}


def pretrain_settings(wildcards):
    settings = {"seed": config["seed"] + int(wildcards.fold)}
    settings.update(model_entry(wildcards.model, wildcards.run).get("pretrain") or {})
    return canon(settings)


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
                run = train_run(row["model"], row.get("run", RUN))
                for ds in table["datasets"]:
                    for fold in FOLDS:
                        files.add(f"results/models/{trainset_of(ds)}/{weights_model(row['model'])}/{run}/fold-{fold}/model.pt")
    return sorted(files)


def train_logs():
    return [f.replace("model.pt", "train_log.tsv") for f in all_model_files()]


def qualitative_inputs(wildcards):
    """Scores, thresholds, reconstructions and volumes the qualitative figure of one table shows."""
    spec = QUALITATIVE[wildcards.table]
    table = TABLES[wildcards.table]
    files = [f"results/data/{ds}/volumes.npz" for ds in table["datasets"]]
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


def inference_time_jobs():
    """Reconstruct outputs whose measured seconds per volume make the inference-time table:
    ``[{"row", "file"}]`` for every row, dataset and fold of the configured table."""
    spec = config["report"].get("inference_time")
    if not spec:
        return []
    table = TABLES[spec["table"]]
    jobs = []
    for row in table["rows"]:
        label = row_label(row, MODELS)
        for ds in table["datasets"]:
            for fold in FOLDS:
                base = f"{trainset_of(ds)}/{row['model']}/{row.get('run', RUN)}/fold-{fold}"
                jobs.append({"row": label, "file": f"results/recon/{base}/{ds}.npz"})
    return jobs


def domain_shift_jobs():
    spec = config["report"].get("domain_shift")
    if not spec:
        return []
    return [f"results/analysis/domain_shift/{spec['trainset']}/{m}/{RUN}/fold-{spec.get('fold', 0)}"
            for m in spec["models"]]


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
    figs = [*expand("results/figures/qualitative_{table}.png", table=QUALITATIVE), "results/figures/training_curves.png"]
    if config["report"].get("mhd_figure"):
        figs.append("results/figures/mhd.png")
    if config["report"].get("domain_shift"):
        figs.append("results/figures/domain_shift.png")
    return figs + expand("results/figures/sweep_{sweep}.png", sweep=ALL_SWEEPS)

"""The planned study of one validated config: models and their sweep runs, scorings, tables, the files each
target needs and the cross-checks the config schema cannot express (torch-free, importable at parse time).

``workflow/rules/common.smk`` builds one :class:`Study` and wraps its methods in Snakemake input functions;
everything here is plain Python over the config dict, so it is unit-tested without running Snakemake.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd
import yaml

from brainuad import conventions as conv
from brainuad import paths
from brainuad.catalog import LEARNING_FREE, entry_backbone, entry_configured, ssl_encoder_signature
from brainuad.data.manifest import subject_files, subject_flags  # noqa: F401 (the workflow's names)
from brainuad.evaluation import claims as claims_lib
from brainuad.evaluation import overrides
from brainuad.evaluation import stats as stats_lib
from brainuad.reporting.tables import row_label, row_scoring, table_row

#: the run of a model as configured (no sweep row applied)
RUN = "default"
#: what a ``weights_from`` model (e.g. an ENS variant) takes from its source and may not change
WEIGHT_KEYS = ("arch", "hparams", "train", "pretrain", "pretrain_from")
#: config sections of a model that a model sweep column may set
OVERRIDE_SECTIONS = ("hparams", "train", "reconstruct")
#: preprocess keys that fix the output grid: a pathology set must match its training set in these
GRID_KEYS = ("spacing_mm", "crop_pad", "downsample", "slice_crop")
#: generator options a synthetic dataset of each kind accepts (keywords of brainuad.data.synthetic.*_anomaly)
SYNTHETIC_OPTIONS = {
    "draem": ("gamma_range", "threshold_range", "scale_exponents", "augmentations", "n_augmentations", "source",
              "rotate", "max_tries", "p_anomaly"),
    "pii": ("alpha_range", "size_range", "cg_iterations"),
    "fpi": ("alpha_range", "size_range"),
}


def config_error(msg: str) -> ValueError:
    """The error every failed cross-check raises: ``config error: <msg>``."""
    return ValueError(f"config error: {msg}")


def schema_error(config: dict, schema_path: str | Path) -> ValueError | None:
    """The first schema violation of ``config`` as one short message, or None when it is valid.

    Snakemake's own validation error prints the whole schema section (about 170 lines for ``preprocess``);
    this names the key, its path and, for an unknown key, the keys allowed at that level only, e.g.
    ``config error: preprocess.spacing: unknown key; allowed in preprocess: bias_correction, crop_pad, ...``.
    """
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        level = where or "the top level"
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        return config_error(f"{key}: unknown key; allowed in {level}: {', '.join(allowed)}")
    return config_error(f"{where or '(top level)'}: {error.message}")


def canon(obj):
    """Recursively key-sorted copy of a config value, so that params (which Snakemake compares as text)
    do not change when keys are merely reordered in a YAML file."""
    if isinstance(obj, dict):
        return {k: canon(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [canon(v) for v in obj]
    return obj


def inherit_weights_from(models: dict) -> None:
    """Give every ``weights_from`` model the :data:`WEIGHT_KEYS` sections of its source, in place (a section
    counts as unset when absent or empty, the schema default)."""
    for entry in models.values():
        source = models.get(entry.get("weights_from"))
        for key in WEIGHT_KEYS:
            if source is not None and not entry.get(key) and key in source:
                entry[key] = copy.deepcopy(source[key])


def run_ids(table: pd.DataFrame) -> list[str]:
    """Run id of every row of a model sweep table, ``col~value`` joined by ``__`` in column order.

    The same ids as ``snakemake.utils.Paramspace(table, filename_params="*", param_sep="~",
    filename_sep="__").instance_patterns`` for a table of strings.
    """
    return ["__".join(f"{name}~{value}" for name, value in row._asdict().items())
            for row in table.itertuples(index=False)]


def read_model_sweep(name: str, spec: dict, basedir: str | Path) -> dict[str, dict]:
    """Rows of one model sweep table -> ``{run id: {"section.key": value}}``.

    Each TSV row is one run; its id (:func:`run_ids`) names exactly what changed, so editing one row reruns
    that row only. The table path is taken as given, else relative to the working directory, else to
    ``basedir`` (the workflow folder).
    """
    path = Path(spec["table"])
    if not (path.is_absolute() or path.exists()):
        path = Path(basedir) / path
    if not path.exists():
        raise config_error(f"sweeps.{name}.table: {path} does not exist")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except Exception as err:
        raise config_error(f"sweeps.{name}.table: {path} is not a readable TSV ({err})")
    if df.empty:
        raise config_error(f"sweeps.{name}.table: {path} has no rows")
    for col in df.columns:
        if col not in spec["set"]:
            raise config_error(f"{path}: column {col!r} is not mapped under sweeps.{name}.set")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", col) or "__" in col:
            raise config_error(f"{path}: column {col!r} must be a plain name (letters, digits, single _)")
    runs = {}
    for (_, row), run in zip(df.iterrows(), run_ids(df)):
        if not re.fullmatch(r"[A-Za-z0-9_.+~=-]+", run):
            raise config_error(f"{path}: row {dict(row)} gives the run id {run!r}; "
                               "values may hold only letters, digits and . + - =")
        if run in runs:
            raise config_error(f"{path}: duplicate row {dict(row)}")
        runs[run] = {spec["set"][col]: yaml.safe_load(row[col]) for col in df.columns}
    return runs


def preprocessed_files(dataset: str, subjects) -> dict[str, list[str]]:
    """Pre-processed volumes (one list per NIfTI kind) and QC records (``qc``) of the given subjects."""
    files = {kind: [paths.fill(paths.NIFTI, dataset=dataset, subject=s, kind=kind) for s in subjects]
             for kind in paths.NIFTI_KINDS}
    files["qc"] = [paths.fill(paths.SUBJECT_QC, dataset=dataset, subject=s) for s in subjects]
    return files


class Study:
    """Everything a workflow run plans, derived from one schema-validated config.

    Parameters
    ----------
    config : dict
        The config after schema validation (defaults filled in). The sections of ``weights_from`` models
        are filled in place (:func:`inherit_weights_from`), so every param shows the effective entries.
    basedir : str or Path
        The workflow folder (holds ``workflow/schemas`` and the relative sweep tables).

    Raises
    ------
    ValueError
        ``config error: ...`` for a cross-reference the schema cannot express.
    """

    def __init__(self, config: dict, basedir: str | Path):
        self.config = config
        self.basedir = Path(basedir)
        self.datasets = config["datasets"]
        #: datasets built by the ``synthesize`` rule from a healthy dataset's test split (``synthetic`` key)
        self.synthetic_datasets = [n for n, ds in self.datasets.items() if "synthetic" in ds]
        #: datasets read from a source (manifest -> preprocess -> pack)
        self.source_datasets = [n for n in self.datasets if n not in self.synthetic_datasets]
        self._fill_synthetic()
        self.models = config["models"]
        inherit_weights_from(self.models)
        #: the conventions in force: ``preset`` and every switch (:func:`brainuad.conventions.resolve`)
        self.conventions = conv.resolve(config.get("conventions"))
        self.scoring_sweeps = config.get("scoring_sweeps", {})
        self.scorings = self._expand_scorings()
        self.tables = config["tables"]
        #: {protocol id: the effective evaluation options} of every evaluation protocol in use ("default" too)
        self.protocols = {overrides.DEFAULT: canon(config["evaluation"])}
        #: models whose backbone weights file is missing: no jobs, their table rows say "not configured"
        self.unconfigured = sorted(m for m, entry in self.models.items() if not entry_configured(entry))
        #: {table: rows with scoring, run and protocol (its id, brainuad.evaluation.overrides) filled in}
        self.table_rows = {name: [self._with_protocol(table_row(row, RUN), f"tables.{name}", table.get("protocol"))
                                  for row in table["rows"] if row["model"] not in self.unconfigured]
                           for name, table in self.tables.items()}
        self.folds = list(range(config["splits"]["folds"]))
        self.model_sweeps = config.get("sweeps", {})
        self.all_sweeps = [*self.scoring_sweeps, *self.model_sweeps]
        self._sweep_runs = {}
        #: {(model, run): {"section.key": value}} of every model sweep row
        self.runs = self._collect_runs()
        self.run_ids = sorted({run for _, run in self.runs} | {RUN})
        #: {sweep: protocol id} of every sweep (its own ``protocol`` entry, else "default")
        self.sweep_protocols = {name: self._with_protocol({}, f"sweeps.{name}", spec.get("protocol"))["protocol"]
                                for name, spec in {**self.scoring_sweeps, **self.model_sweeps}.items()}
        #: ids of the protocols other than "default" (the ``protocol`` wildcard of the evaluate rules)
        self.protocol_ids = sorted(set(self.protocols) - {overrides.DEFAULT})
        self.qualitative = self._qualitative_specs()
        self.check_config()
        self.check_sources()

    # ------------------------------------------------------------ evaluation protocols
    def _with_protocol(self, row: dict, where: str, *layers) -> dict:
        """``row`` with ``protocol`` = the id of its effective protocol (``layers``, e.g. the table's, then the
        row's own ``protocol``); the protocol's options are recorded in :attr:`protocols`."""
        try:
            merged = overrides.resolve(self.config["evaluation"], *layers, row.get("protocol"))
            pid = overrides.protocol_id(self.config["evaluation"], merged)
        except ValueError as err:
            raise config_error(f"{where}.protocol: {err}")
        self.protocols.setdefault(pid, canon(overrides.effective_options(self.config["evaluation"], merged)))
        return {**row, "protocol": pid}

    def evaluation_options(self, protocol: str = overrides.DEFAULT) -> dict:
        """The ``evaluate`` rule's options under protocol id ``protocol``: the ``evaluation`` section with the
        protocol's overrides merged in."""
        return self.protocols[protocol]

    def table_spec(self, table: str) -> dict:
        """The table's config entry with its rows resolved (scoring, run and protocol id filled in)."""
        return canon({**self.tables[table], "rows": self.table_rows[table]})

    def eval_path(self, pattern_name: str, row: dict, dataset: str, fold) -> str:
        """One evaluation output of a resolved row: ``pattern_name`` ``THRESHOLD``, ``METRICS`` or
        ``FPR_METRICS`` (the ``PROTOCOL_`` pattern when the row's protocol is not the default)."""
        protocol = row.get("protocol", overrides.DEFAULT)
        pattern = getattr(paths, pattern_name if protocol == overrides.DEFAULT else f"PROTOCOL_{pattern_name}")
        return paths.fill(pattern, trainset=self.trainset_of(dataset), model=row["model"], run=row["run"], fold=fold,
                          dataset=dataset, scoring=row["scoring"], protocol=protocol)

    def healthy_threshold(self, trainset: str, model: str, run: str, fold, scoring: str,
                          protocol: str = overrides.DEFAULT) -> str:
        """threshold.json of the healthy evaluation (same model, fold, scoring and protocol) whose
        ``fpr_thresholds`` the pathology evaluation ``evaluate_fpr`` applies."""
        row = {"model": model, "run": run, "scoring": scoring, "protocol": protocol}
        return self.eval_path("THRESHOLD", row, trainset, fold)

    def lesionwise_tables(self) -> list[str]:
        return list(self.config["report"].get("lesionwise") or [])

    def healthy_fpr_tables(self) -> list[str]:
        return list(self.config["report"].get("healthy_fpr") or [])

    def fpr_files(self, table: str) -> list[str]:
        """fpr.tsv (healthy-FPR thresholds applied) of every row, dataset and fold of ``table``."""
        return [self.eval_path("FPR_METRICS", row, ds, fold) for row in self.table_rows[table]
                for ds in self.tables[table]["datasets"] for fold in self.folds]

    def detection_files(self) -> list[str]:
        """The lesion-wise and healthy-FPR tables (TSV, Markdown) and the lesion-wise figures of ``report``."""
        files = []
        for t in self.lesionwise_tables():
            files += [paths.fill(paths.LESION_TABLE, table=t, ext=ext) for ext in ("tsv", "md")]
            files.append(paths.fill(paths.LESION_FIGURE, table=t))
        for t in self.healthy_fpr_tables():
            files += [paths.fill(paths.FPR_TABLE, table=t, ext=ext) for ext in ("tsv", "md")]
        return files

    # ------------------------------------------------------------ scorings and sweeps
    def sweep_value_id(self, sweep: dict, value) -> str:
        """Scoring id of one value of a scoring sweep, e.g. ``ssim@sigma=0.5``; the base scoring's own id
        when the value is the one the base scoring already uses (nothing is computed twice)."""
        base = self.config["scorings"][sweep["scoring"]]
        if base.get(sweep["param"]) == value:
            return sweep["scoring"]
        return f"{sweep['scoring']}@{sweep['param']}={value}"

    def _expand_scorings(self) -> dict:
        """The configured scorings plus one generated scoring per value of every scoring sweep."""
        configured = self.config["scorings"]
        scorings = dict(configured)
        for name, sweep in self.scoring_sweeps.items():
            if sweep["scoring"] not in scorings:
                raise config_error(f"scoring_sweeps.{name}.scoring {sweep['scoring']!r} is not under scorings")
            for value in sweep["values"]:
                scorings[self.sweep_value_id(sweep, value)] = {**configured[sweep["scoring"]], sweep["param"]: value}
        return scorings

    def scoring_params(self, scoring: str) -> dict:
        """The ``score`` rule's parameters of a scoring id: its entry plus, for a scoring that computes an
        SSIM, the SSIM switches of ``conventions`` under the function's keyword names (a key the entry sets
        itself wins). Scorings without an SSIM (l1, native, ...) get no switch, so changing one reruns only
        the SSIM scorings."""
        entry = self.scorings[scoring]
        extra = conv.scoring_kwargs(entry["name"], self.conventions) if conv.scoring_uses_ssim(entry) else {}
        return canon({**extra, **entry})

    def evaluation_conventions(self, dataset: str) -> dict:
        """The switches of ``conventions`` the ``evaluate`` rule of ``dataset`` uses: the post-processing order
        for a healthy dataset; also the component rule, AUPRC region and threshold ties for a pathology one."""
        healthy = self.datasets[dataset]["role"] == "healthy"
        return conv.subset(self.conventions, conv.HEALTHY_SWITCHES if healthy else conv.EVALUATION_SWITCHES)

    def figure_conventions(self) -> dict:
        """The switches of ``conventions`` the qualitative and MHD figures use (order, component rule)."""
        return conv.subset(self.conventions, conv.FIGURE_SWITCHES)

    def conventions_provenance(self) -> list[tuple[str, str, str]]:
        """``(switch, value, where from)`` of every switch, for the report's provenance page; where from is
        ``preset <name>`` or ``set in config``."""
        own = conv.overridden(self.config.get("conventions"))
        return [(key, self.conventions[key], "set in config" if key in own else f"preset {self.conventions['preset']}")
                for key in conv.SWITCHES]

    def sweep_runs(self, name: str) -> dict[str, dict]:
        """``{run id: overrides}`` of model sweep ``name`` (its table is read once)."""
        if name not in self._sweep_runs:
            self._sweep_runs[name] = read_model_sweep(name, self.model_sweeps[name], self.basedir)
        return self._sweep_runs[name]

    def _collect_runs(self) -> dict:
        runs = {}
        for name, spec in self.model_sweeps.items():
            for key in spec["set"].values():
                if key.split(".")[0] not in OVERRIDE_SECTIONS or "." not in key:
                    sections = ", ".join(f"{section}." for section in OVERRIDE_SECTIONS)
                    raise config_error(f"sweeps.{name}.set: {key!r} must start with one of {sections}")
            for model in spec["models"]:
                if model not in self.models:
                    raise config_error(f"sweeps.{name}.models: unknown model {model!r}")
                for run, overrides in self.sweep_runs(name).items():
                    if runs.get((model, run), overrides) != overrides:
                        raise config_error(f"sweeps.{name}: run {run!r} of {model} means different "
                                           "settings in two sweeps; rename a column")
                    runs[(model, run)] = overrides
        return runs

    def _qualitative_specs(self) -> dict:
        """report.qualitative as {table: spec}; the key takes one {table, fold} mapping or a list of them."""
        specs = self.config["report"]["qualitative"]
        specs = specs if isinstance(specs, list) else [specs]
        return {spec["table"]: {"fold": 0, **spec} for spec in specs}

    # ------------------------------------------------------------ models
    def model_entry(self, model: str, run: str = RUN) -> dict:
        """The model's config entry with the overrides of sweep row ``run`` applied."""
        entry = self.models[model]
        overrides = self.runs.get((model, run), {})
        if run != RUN and (model, run) not in self.runs:
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

    def train_run(self, model: str, run: str) -> str:
        """The run whose trained weights ``run`` uses: rows that only change reconstruction settings
        (e.g. t_test) reuse the default run's model instead of training again."""
        overrides = self.runs.get((model, run), {})
        if any(key.split(".")[0] in ("hparams", "train") for key in overrides):
            return run
        return RUN

    def is_trainable(self, model: str) -> bool:
        return self.model_entry(model)["arch"] not in LEARNING_FREE

    def weights_model(self, model: str) -> str:
        """The model whose trained weights ``model`` uses: itself, or ``weights_from`` (e.g. an ENS variant
        that only changes the test-time noise levels of an already trained diffusion model)."""
        return self.model_entry(model).get("weights_from", model)

    def model_hparams(self, model: str, run: str) -> dict:
        return canon(self.model_entry(model, run).get("hparams", {}))

    def train_settings(self, model: str, run: str, fold) -> dict:
        """Training settings: the fold's seed, the ``performance`` switches set in the config, then the
        model's ``train`` section."""
        return canon({"seed": self.config["seed"] + int(fold), **self.performance("train"),
                      **self.model_entry(model, run).get("train", {})})

    def performance(self, stage: str) -> dict:
        """The ``performance`` switches the config sets, as keyword names of ``stage``'s settings.

        ``"train"``: :class:`brainuad.training.TrainSettings` fields (``train_amp`` -> ``amp``);
        ``"reconstruct"``: reconstruct settings (``reconstruct_amp`` -> ``amp``). Switches the config
        leaves out are not passed (the library defaults apply), so adding this section to a config
        changes the params of no job until a switch is set.
        """
        keys = {"train": {"train_amp": "amp", "channels_last": "channels_last", "compile": "compile",
                          "data_on_device": "data_on_device", "log_every": "log_every"},
                "reconstruct": {"reconstruct_amp": "amp", "channels_last": "channels_last", "compile": "compile",
                                "memory_mb": "memory_mb"}}[stage]
        perf = self.config.get("performance") or {}
        return {name: perf[key] for key, name in keys.items() if key in perf}

    def pretrain_settings(self, model: str, run: str, fold) -> dict:
        """Encoder pre-training settings: the fold's seed, then the model's ``pretrain`` section."""
        return canon({"seed": self.config["seed"] + int(fold), **(self.model_entry(model, run).get("pretrain") or {})})

    def reconstruct_settings(self, model: str, run: str) -> dict:
        """The ``reconstruct`` section with the model's own ``reconstruct`` overrides applied."""
        return canon({**self.performance("reconstruct"), **self.config["reconstruct"],
                      **self.model_entry(model, run).get("reconstruct", {})})

    def model_file(self, trainset: str, model: str, run: str, fold) -> str | None:
        """The trained weights a job of ``model`` (run ``run``) reads; None for a learning-free model."""
        if not self.is_trainable(model):
            return None
        return paths.fill(paths.MODEL, trainset=trainset, model=self.weights_model(model),
                          run=self.train_run(model, run), fold=fold)

    # ------------------------------------------------------------ SADM Stage II
    def is_stage2(self, model: str) -> bool:
        """Whether ``model`` is a SADM Stage II model (a ``stage2`` section: trained by ``train_stage2``)."""
        return bool(self.model_entry(model).get("stage2"))

    def stage2_models(self) -> list[str]:
        return sorted(m for m in self.models if self.is_stage2(m))

    def stage2_data(self, model: str) -> dict:
        """``{"kind": "synthetic" | "labels", "dataset": name}`` of a Stage II model's training data (the dataset:
        the healthy training set for synthetic data, filled in per job, or the labelled pathology set)."""
        data = self.model_entry(model)["stage2"]["data"]
        return {"kind": "synthetic", "dataset": None} if data == "synthetic" else {"kind": "labels", "dataset": data}

    def stage2_inputs(self, trainset: str, model: str, run: str, fold) -> dict[str, str]:
        """``stage1`` (the Stage I model.pt of the same training set and fold), ``volumes`` and ``splits`` of the
        Stage II training data (the healthy training set, or the labelled pathology set)."""
        stage1 = self.model_entry(model)["stage2"]["stage1"]
        data = self.stage2_data(model)["dataset"] or trainset
        if data != trainset and self.trainset_of(data) != trainset:
            raise ValueError(f"models.{model}.stage2.data {data!r} belongs to the training set "
                             f"{self.trainset_of(data)!r}, not {trainset!r}: Stage II models of {model} can only be "
                             f"evaluated on pathology sets of {self.trainset_of(data)!r}")
        return {"stage1": self.model_file(trainset, stage1, RUN, fold),
                "volumes": paths.fill(paths.VOLUMES, dataset=data), "splits": paths.fill(paths.SPLITS, dataset=data)}

    def stage1_params(self, model: str) -> dict:
        """The Stage I model's name, arch, hparams and test-time noise level (a ``train_stage2`` param: editing
        Stage I reruns Stage II, as does the new Stage I checkpoint, an input)."""
        stage1 = self.model_entry(model)["stage2"]["stage1"]
        return canon({"model": stage1, "arch": self.model_entry(stage1)["arch"],
                      "hparams": self.model_hparams(stage1, RUN),
                      "noise_level": self.reconstruct_settings(stage1, RUN).get("noise_level")})

    def stage2_heldout(self) -> dict[str, str]:
        """{pathology dataset: its splits file} of every dataset with ``stage2_train`` (listed in the report)."""
        return {ds: paths.fill(paths.SPLITS, dataset=ds) for ds, e in self.datasets.items() if e.get("stage2_train")}

    def _check_stage2(self) -> None:
        for name in self.models:
            entry = self.models[name]
            spec = entry.get("stage2")
            if entry.get("arch") == "sadm" and not spec:
                raise config_error(f"models.{name}: arch sadm needs a stage2 section (stage1, data)")
            if not spec:
                continue
            if entry.get("weights_from"):
                raise config_error(f"models.{name}: a stage2 model cannot use weights_from; give table rows of the "
                                   "same model different scorings (native = Unet, sadm = SADM)")
            if entry.get("arch") != "sadm":
                raise config_error(f"models.{name}.stage2 needs arch sadm, got {entry.get('arch')!r}")
            stage1 = spec["stage1"]
            if stage1 not in self.models or self.models[stage1].get("stage2") or not self.is_trainable(stage1):
                raise config_error(f"models.{name}.stage2.stage1: {stage1!r} must name a trained Stage I model")
            data = spec["data"]
            if data != "synthetic":
                ds = self.datasets.get(data)
                if ds is None or ds["role"] != "pathology" or not ds.get("stage2_train"):
                    raise config_error(f"models.{name}.stage2.data: {data!r} must be 'synthetic' or a pathology "
                                       "dataset with stage2_train set")

    def encoder_file(self, trainset: str, model: str, run: str, fold) -> str | None:
        """The SSL-pretrained encoder the training of a model with a ``pretrain`` section reads, else None.

        A model with ``pretrain_from: other`` reads ``other``'s encoder (one in-domain backbone stage shared by
        the feature-based baselines; ``check_config`` ensures the architectures agree)."""
        entry = self.model_entry(model, run)
        if entry.get("pretrain_from"):
            return paths.fill(paths.ENCODER, trainset=trainset, model=entry["pretrain_from"], run=RUN, fold=fold)
        if not entry.get("pretrain"):
            return None
        return paths.fill(paths.ENCODER, trainset=trainset, model=model, run=run, fold=fold)

    # ------------------------------------------------------------ datasets
    def trainset_of(self, dataset: str) -> str:
        return paths.trainset_of(dataset, self.datasets)

    def source_of(self, dataset: str) -> dict:
        """The dataset's source entry; ``{"kind": "synthetic"}`` for a synthetic dataset."""
        if dataset in self.synthetic_datasets:
            return {"kind": "synthetic"}
        return self.config["sources"][self.datasets[dataset]["source"]]

    def preprocess_options(self, dataset: str) -> dict:
        """The preprocess section with the overrides of the dataset's source applied (a synthetic dataset:
        those of the dataset it is built from)."""
        if dataset in self.synthetic_datasets:
            return self.preprocess_options(self.datasets[dataset]["synthetic"]["from"])
        return {**self.config["preprocess"], **self.source_of(dataset).get("preprocess", {})}

    # ------------------------------------------------------------ synthetic-anomaly datasets
    def _fill_synthetic(self) -> None:
        """Defaults of the synthetic datasets: trainset and sequence of the healthy dataset they come from."""
        for name in self.synthetic_datasets:
            ds, spec = self.datasets[name], self.datasets[name]["synthetic"]
            parent = self.datasets.get(spec["from"])
            if parent is None or "synthetic" in parent or parent["role"] != "healthy":
                raise config_error(f"datasets.{name}.synthetic.from must name a healthy dataset read from a source, "
                                   f"got {spec['from']!r}")
            if ds["role"] != "pathology":
                raise config_error(f"datasets.{name}: a synthetic dataset is evaluated like a pathology set; "
                                   "set role: pathology")
            for key in ("source", "cohort"):
                if key in ds:
                    raise config_error(f"datasets.{name}: a synthetic dataset has no {key} (it is built from "
                                       f"{spec['from']})")
            kind = spec.get("kind", "draem")
            wrong = sorted(set(spec.get("options", {})) - set(SYNTHETIC_OPTIONS[kind]))
            if wrong:
                raise config_error(f"datasets.{name}.synthetic.options: {', '.join(wrong)} not used by kind {kind!r} "
                                   f"(it takes {', '.join(SYNTHETIC_OPTIONS[kind])})")
            opts = spec.get("options", {})
            if kind == "draem" and opts.get("n_augmentations", 3) > len(opts.get("augmentations", range(7))):
                raise config_error(f"datasets.{name}.synthetic.options: n_augmentations exceeds the augmentations listed")
            ds.setdefault("trainset", spec["from"])
            ds.setdefault("sequence", parent["sequence"])

    def synthetic_settings(self, dataset: str) -> dict:
        """``params.spec`` of the synthesize rule: kind, seed, mode, options (schema defaults filled in)."""
        spec = self.datasets[dataset]["synthetic"]
        return {"kind": spec.get("kind", "draem"), "seed": int(spec.get("seed", self.config["seed"])),
                "mode": spec.get("mode", "volume"), "options": spec.get("options", {})}

    def synthetic_parent(self, dataset: str) -> str:
        """The healthy dataset a synthetic dataset is built from."""
        return self.datasets[dataset]["synthetic"]["from"]

    def split_manifest(self, dataset: str) -> str:
        """Manifest the splits rule reads: the dataset's own, or that of a synthetic dataset's source dataset
        (the splits keep only the subjects in the pack)."""
        if dataset in self.synthetic_datasets:
            return paths.fill(paths.MANIFEST, dataset=self.synthetic_parent(dataset))
        return paths.fill(paths.MANIFEST, dataset=dataset)

    def raw_dir(self, dataset: str) -> str | None:
        """Phantom: the generated cohort folder. Real data: None (the raw data are outside the workflow;
        the manifest job scans them and records a checksum of every file)."""
        if self.source_of(dataset)["kind"] != "phantom":
            return None
        ds = self.datasets[dataset]
        return paths.fill(paths.RAW, source=ds["source"], cohort=ds["cohort"])

    def scan_settings(self, dataset: str) -> dict:
        """Adapter call of a real-data dataset: kind, absolute root (relative roots are taken from the
        working directory), options (source options, then the cohort's, then the dataset's source name),
        strict."""
        ds, src = self.datasets[dataset], self.source_of(dataset)
        if src["kind"] == "phantom":
            return {"kind": "phantom"}
        options = {**src.get("options", {}), **src.get("cohorts", {}).get(ds["cohort"], {})}
        options.setdefault("source", ds["source"])
        root = Path(src["root"]).expanduser()
        return {"kind": src["kind"], "root": str(root if root.is_absolute() else Path.cwd() / root),
                "options": options, "strict": bool(src.get("strict", False))}

    def data_files(self) -> list[str]:
        """Packed volumes of every dataset and QC table of every dataset read from a source (``all_data``)."""
        return ([paths.fill(paths.VOLUMES, dataset=ds) for ds in self.datasets]
                + [paths.fill(paths.QC_TABLE, dataset=ds) for ds in self.source_datasets])

    # ------------------------------------------------------------ tables and models
    def eval_files(self, rows: list[dict], datasets: list[str], folds: list[int] | None = None) -> list[str]:
        """``metrics.tsv`` and ``threshold.json`` of every row (``model``, ``run``, ``scoring``), dataset
        and fold (``folds``, default every fold), in that nesting order."""
        files = []
        for row in rows:
            for ds in datasets:
                for fold in self.folds if folds is None else folds:
                    files += [self.eval_path("METRICS", row, ds, fold), self.eval_path("THRESHOLD", row, ds, fold)]
        return files

    def table_metric_files(self, table: str) -> list[str]:
        """Evaluation files the table ``table`` aggregates."""
        return self.eval_files(self.table_rows[table], self.tables[table]["datasets"])

    def table_files(self, ext: str) -> list[str]:
        return [paths.fill(paths.TABLE, table=t, ext=ext) for t in self.tables]

    def all_table_files(self) -> list[str]:
        return [paths.fill(paths.TABLE, table=t, ext=ext) for t in self.tables for ext in paths.TABLE_EXTS]

    def _trained(self) -> list[dict]:
        """Wildcards of every trained model some table row uses."""
        keys = []
        for name, table in self.tables.items():
            for row in self.table_rows[name]:
                if self.is_trainable(row["model"]):
                    run = self.train_run(row["model"], row["run"])
                    for ds in table["datasets"]:
                        for fold in self.folds:
                            keys.append(dict(trainset=self.trainset_of(ds), model=self.weights_model(row["model"]),
                                             run=run, fold=fold))
        return keys

    def viewer_map_dirs(self) -> list[str]:
        """Folders of the ``viewer_maps`` rule (target ``all_maps``): config ``viewer_maps`` -- every (model,
        run, scoring) row of its tables (every table when ``tables`` is null) on their pathology datasets
        (synthetic-anomaly sets left out: no raw scan holds their anomalies), at its folds."""
        spec = self.config.get("viewer_maps") or {}
        tables = spec.get("tables") or list(self.tables)
        unknown = [t for t in tables if t not in self.tables]
        if unknown:
            raise config_error(f"viewer_maps.tables: unknown tables {unknown}; known: {sorted(self.tables)}")
        bad = [f for f in spec.get("folds", [0]) if f not in self.folds]
        if bad:
            raise config_error(f"viewer_maps.folds: {bad} not among the {len(self.folds)} folds of splits.folds")
        dirs = set()
        for name in tables:
            for row in self.table_rows[name]:
                for ds in self.tables[name]["datasets"]:
                    # synthetic-anomaly sets have no raw scan that shows their anomalies: no viewer maps
                    if self.datasets[ds]["role"] == "healthy" or ds in self.synthetic_datasets:
                        continue
                    for fold in spec.get("folds", [0]):
                        dirs.add(paths.fill(paths.VIEWER_MAPS, trainset=self.trainset_of(ds), model=row["model"],
                                            run=row["run"], fold=fold, dataset=ds, scoring=row["scoring"]))
        return sorted(dirs)

    def all_model_files(self) -> list[str]:
        return sorted({paths.fill(paths.MODEL, **key) for key in self._trained()})

    def train_logs(self) -> list[str]:
        return sorted({paths.fill(paths.TRAIN_LOG, **key) for key in self._trained()})

    # ------------------------------------------------------------ figures, sweeps, report
    def qualitative_inputs(self, table: str) -> list[str]:
        """Scores, thresholds, reconstructions and volumes the qualitative figure of one table shows."""
        fold = self.qualitative[table]["fold"]
        datasets = self.tables[table]["datasets"]
        files = [paths.fill(paths.VOLUMES, dataset=ds) for ds in datasets]
        for row in self.table_rows[table]:
            for ds in datasets:
                key = dict(trainset=self.trainset_of(ds), model=row["model"], run=row["run"], fold=fold, dataset=ds)
                files.append(paths.fill(paths.SCORES, scoring=row["scoring"], **key))
                files.append(paths.fill(paths.THRESHOLD, scoring=row["scoring"], **key))
                if self.is_trainable(row["model"]):
                    files.append(paths.fill(paths.RECON, **key))
        return sorted(set(files))

    def sweep_ids(self, sweep: str) -> list[str]:
        """Scoring ids of a scoring sweep's values ([] for a model sweep)."""
        spec = self.scoring_sweeps.get(sweep)
        return [self.sweep_value_id(spec, v) for v in spec["values"]] if spec else []

    def sweep_points(self, sweep: str) -> list[dict]:
        """Model sweep: one ``{"run", "value"}`` per table row, value = the row's x column ([] for a scoring
        sweep)."""
        spec = self.model_sweeps.get(sweep)
        if not spec:
            return []
        x = spec.get("x") or next(iter(spec["set"]))
        return [{"run": run, "value": overrides[spec["set"][x]]} for run, overrides in self.sweep_runs(sweep).items()]

    def sweep_inputs(self, sweep: str) -> list[str]:
        """Evaluation files of every point (and the reference) of one sweep."""
        if sweep in self.model_sweeps:
            spec = self.model_sweeps[sweep]
            runs = [pt["run"] for pt in self.sweep_points(sweep)] + ([spec["reference"]] if spec.get("reference") else [])
            scoring = row_scoring(spec)
            rows = [{"model": model, "run": run, "scoring": scoring, "protocol": self.sweep_protocols[sweep]}
                    for model in spec["models"] for run in runs]
            return self.eval_files(rows, spec["datasets"], self.sweep_folds(sweep))
        spec = self.scoring_sweeps[sweep]
        ids = self.sweep_ids(sweep) + ([spec["reference"]] if spec.get("reference") else [])
        return self.eval_files([{"model": spec["model"], "run": RUN, "scoring": sid,
                                 "protocol": self.sweep_protocols[sweep]} for sid in ids], spec["datasets"])

    def sweep_folds(self, sweep: str) -> list[int]:
        """Folds a model sweep's rows and reference run on: ``sweeps.<name>.folds``, default every fold."""
        spec = self.model_sweeps.get(sweep) or {}
        return list(spec.get("folds") or self.folds)

    def sweep_figures(self) -> list[str]:
        return [paths.fill(paths.SWEEP_FIGURE, sweep=s) for s in self.all_sweeps]

    def sweep_tables(self) -> list[str]:
        return [paths.fill(paths.SWEEP_TABLE, sweep=s) for s in self.all_sweeps]

    def all_sweep_files(self) -> list[str]:
        return self.sweep_figures() + self.sweep_tables()

    def inference_time_jobs(self) -> list[dict]:
        """Reconstruct outputs whose measured seconds per volume make the inference-time table:
        ``[{"row", "file"}]`` for every row, dataset and fold of the configured table."""
        spec = self.config["report"].get("inference_time")
        if not spec:
            return []
        jobs = []
        for row in self.table_rows[spec["table"]]:
            label = row_label(row, self.models)
            for ds in self.tables[spec["table"]]["datasets"]:
                for fold in self.folds:
                    file = paths.fill(paths.RECON, trainset=self.trainset_of(ds), model=row["model"], run=row["run"],
                                      fold=fold, dataset=ds)
                    jobs.append({"row": label, "file": file})
        return jobs

    def domain_shift_files(self, ext: str) -> list[str]:
        """Outputs (``tsv`` or ``npz``) of the domain-shift analysis of every configured model."""
        spec = self.config["report"].get("domain_shift")
        if not spec:
            return []
        return [paths.fill(paths.DOMAIN_SHIFT, trainset=spec["trainset"], model=m, run=RUN, fold=spec.get("fold", 0),
                           ext=ext) for m in spec["models"]]

    def domain_shift_labels(self) -> list[str]:
        spec = self.config["report"].get("domain_shift") or {}
        return [self.models[m].get("label", m) for m in spec.get("models", [])]

    def mhd_figure_inputs(self) -> dict[str, str]:
        """Scores of the three Mahalanobis variants (keyed as in ``report.mhd_figure.scorings``), ``recon``,
        ``threshold`` and ``volumes`` of the MHD figure; {} when it is not configured."""
        spec = self.config["report"].get("mhd_figure")
        if not spec:
            return {}
        ds = spec["dataset"]
        key = dict(trainset=self.trainset_of(ds), model=spec["model"], run=RUN, fold=spec.get("fold", 0), dataset=ds)
        files = {name: paths.fill(paths.SCORES, scoring=sid, **key) for name, sid in spec["scorings"].items()}
        files["recon"] = paths.fill(paths.RECON, **key)
        files["threshold"] = paths.fill(paths.THRESHOLD, scoring=spec["scorings"]["full"], **key)
        files["volumes"] = paths.fill(paths.VOLUMES, dataset=ds)
        return files

    def p81_entries(self) -> list[dict]:
        """One entry per (row, dataset) of the ``report.p81`` table at its fold: row and dataset labels and the
        ``recon``, ``volumes`` and ``metrics`` files of :func:`brainuad.analysis.p81.run_p81_analysis`."""
        spec = self.config["report"].get("p81")
        if not spec:
            return []
        table, fold = spec["table"], spec.get("fold", 0)
        entries = []
        for row in self.table_rows[table]:
            for ds in self.tables[table]["datasets"]:
                key = dict(trainset=self.trainset_of(ds), model=row["model"], run=row["run"], fold=fold, dataset=ds)
                entries.append({"label": row_label(row, self.models), "dataset": self.datasets[ds].get("label", ds),
                                "recon": paths.fill(paths.RECON, **key),
                                "volumes": paths.fill(paths.VOLUMES, dataset=ds),
                                "metrics": paths.fill(paths.METRICS, scoring=row["scoring"], **key)})
        return entries

    def report_figures(self) -> list[str]:
        figs = [paths.fill(paths.QUALITATIVE_FIGURE, table=t) for t in self.qualitative] + [paths.TRAINING_CURVES]
        if self.config["report"].get("mhd_figure"):
            figs.append(paths.MHD_FIGURE)
        if self.config["report"].get("domain_shift"):
            figs.append(paths.DOMAIN_SHIFT_FIGURE)
        if self.config["report"].get("p81"):
            figs += [paths.fill(paths.P81_FIGURE, kind=k) for k in ("slicewise", "lesion_size", "l1")]
        figs += [paths.fill(paths.LESION_FIGURE, table=t) for t in self.lesionwise_tables()]
        return figs + self.sweep_figures()

    def report_inputs(self) -> dict[str, list[str]]:
        """Everything the PDF report shows: tables, figures, sweep tables, QC outputs, inference times."""
        qc = {f"qc_{name}": [paths.fill(pattern, dataset=ds) for ds in self.source_datasets]
              for name, pattern in (("tables", paths.QC_TABLE), ("exclusions", paths.QC_EXCLUSIONS),
                                    ("figures", paths.QC_FIGURE))}
        inference = [paths.fill(paths.INFERENCE_TIME, ext="tsv")] if self.config["report"].get("inference_time") else []
        captions = sorted(str(path) for path in (self.basedir / "workflow" / "report").glob("*.rst"))
        return {"tables": self.table_files("tsv"), "figures": self.report_figures(), "sweeps": self.sweep_tables(),
                **qc, "inference": inference, "captions": captions,
                "claims": [paths.CLAIMS] if self.config.get("claims") else [], "published": self.published_files(),
                "lesionwise": [paths.fill(paths.LESION_TABLE, table=t, ext="tsv") for t in self.lesionwise_tables()],
                "healthy_fpr": [paths.fill(paths.FPR_TABLE, table=t, ext="tsv") for t in self.healthy_fpr_tables()],
                "heldout": list(self.stage2_heldout().values())}

    # ------------------------------------------------------------ statistics, published numbers, claims
    def stats_settings(self, table: str | None = None) -> dict:
        """Test settings of ``table`` (the run's ``stats`` with the table's own ``stats`` on top), or of the run."""
        layers = [self.config.get("stats")] + ([self.tables[table].get("stats")] if table else [])
        try:
            return canon(stats_lib.settings(*layers))
        except ValueError as err:
            raise config_error(f"{'tables.' + table + '.' if table else ''}{err}")

    def table_stats_files(self) -> list[str]:
        return [paths.fill(paths.TABLE_STATS, table=t) for t in self.tables]

    def published_file(self, table: str) -> str | None:
        """config/published/<name>.tsv a table declares it reproduces (absolute), else None."""
        spec = self.tables[table].get("published")
        if not spec:
            return None
        return str(self.basedir / paths.fill(paths.PUBLISHED, published=spec["table"]))

    def published_files(self) -> list[str]:
        return [f for f in (self.published_file(t) for t in self.tables) if f]

    def claims_missing(self) -> dict[str, list[str]]:
        """{claim id: what the config lacks for it} (an empty list: testable)."""
        models = {m: e for m, e in self.models.items() if m not in self.unconfigured}  # no results without a backbone
        return {c["id"]: claims_lib.missing(c, models, self.scorings, self.datasets, self.run_ids)
                for c in self.config.get("claims", [])}

    def claims_inputs(self) -> list[str]:
        """Evaluation files (metric claims) and reconstructions (time claims) of every testable claim."""
        files = []
        missing = self.claims_missing()
        for claim in self.config.get("claims", []):
            if missing[claim["id"]]:
                continue
            better, worse = claims_lib.claim_rows(claim, RUN)
            if claim.get("kind", "metric") == "metric":
                files += self.eval_files(better + worse, claim["datasets"])
            else:
                for row in better + worse:
                    for ds in claim["datasets"]:
                        files += [paths.fill(paths.RECON, trainset=self.trainset_of(ds), model=row["model"],
                                             run=row["run"], fold=fold, dataset=ds) for fold in self.folds]
        return sorted(set(files))

    # ------------------------------------------------------------ job granularity (config `jobs`)
    def reconstruct_jobs(self) -> str:
        """``jobs.reconstruct``: ``per_dataset`` (one reconstruct job per trained model and dataset, the
        default) or ``per_model`` (one job per training set, model and run for all its folds and datasets)."""
        return (self.config.get("jobs") or {}).get("reconstruct", "per_dataset")

    def _table_sweep_figure_claim_files(self) -> list[str]:
        """Input files of the tables, model and scoring sweeps, qualitative figures and claims (any kind of path:
        metrics, thresholds, scores, reconstructions)."""
        files = []
        for table in self.tables:
            files += self.table_metric_files(table)
        for sweep in self.all_sweeps:
            files += self.sweep_inputs(sweep)
        for table in self.qualitative:
            files += self.qualitative_inputs(table)
        return files + self.claims_inputs()

    def recon_files(self) -> list[str]:
        """Every reconstruct output the run's targets read (tables, sweeps, claims, figures, report)."""
        files = self._table_sweep_figure_claim_files() + [job["file"] for job in self.inference_time_jobs()]
        files += [entry["recon"] for entry in self.p81_entries()]
        files += [self.mhd_figure_inputs().get("recon")]
        recons = set()
        for file in filter(None, files):
            key = paths.parse(paths.METRICS, file) or paths.parse(paths.THRESHOLD, file) or paths.parse(paths.RECON, file)
            if key:
                recons.add(paths.fill(paths.RECON, **{k: key[k] for k in ("trainset", "model", "run", "fold", "dataset")}))
        for key in self.evaluation_keys()["score"]:  # also those of protocol-only and healthy-FPR evaluations
            recons.add(paths.fill(paths.RECON, **{k: key[k] for k in ("trainset", "model", "run", "fold", "dataset")}))
        return sorted(recons)

    def recon_groups(self) -> dict[tuple[str, str, str], list[dict]]:
        """The reconstruct outputs of :meth:`recon_files`, grouped as the ``per_model`` jobs run them.

        Returns
        -------
        dict
            ``(trainset, model, run)`` -> ``[{"fold", "dataset", "output", "model_file", "volumes", "splits",
            "role"}]`` sorted by fold, then dataset; ``model_file`` is None for a learning-free model.
        """
        groups: dict[tuple[str, str, str], list[dict]] = {}
        for file in self.recon_files():
            key = paths.parse(paths.RECON, file)
            fold = int(key["fold"])
            groups.setdefault((key["trainset"], key["model"], key["run"]), []).append({
                "fold": fold, "dataset": key["dataset"], "output": file,
                "model_file": self.model_file(key["trainset"], key["model"], key["run"], fold),
                "volumes": paths.fill(paths.VOLUMES, dataset=key["dataset"]),
                "splits": paths.fill(paths.SPLITS, dataset=key["dataset"]),
                "role": self.datasets[key["dataset"]]["role"]})
        return {key: sorted(jobs, key=lambda j: (j["fold"], j["dataset"])) for key, jobs in sorted(groups.items())}

    def preprocess_jobs(self) -> str:
        """``jobs.preprocess``: ``per_subject`` (one preprocess job per subject, the default) or ``per_dataset``
        (one job per phantom dataset for all its subjects; other sources stay per subject)."""
        return (self.config.get("jobs") or {}).get("preprocess", "per_subject")

    def preprocess_groups(self) -> dict[str, dict[str, dict[str, str]]]:
        """The per-subject preprocess outputs of every phantom dataset, grouped as the ``per_dataset`` jobs
        write them.

        Only a phantom cohort's subjects are known when the workflow is parsed (``sources.<s>.cohorts.<c>``
        subjects with the ids :data:`brainuad.paths.PHANTOM_SUBJECT`); a real data set's subjects are known
        only after its manifest job, so its subjects keep one job each.

        Returns
        -------
        dict
            ``dataset -> {subject: {"image", "mask", "seg", "ignore", "qc": path}}``, subjects in id order.
        """
        groups = {}
        for name, ds in sorted(self.datasets.items()):
            if name in self.synthetic_datasets or self.source_of(name)["kind"] != "phantom":
                continue
            n = int(self.source_of(name)["cohorts"][ds["cohort"]])
            subjects = [paths.PHANTOM_SUBJECT.format(cohort=ds["cohort"], index=i) for i in range(1, n + 1)]
            groups[name] = {s: {**{kind: paths.fill(paths.NIFTI, dataset=name, subject=s, kind=kind)
                                   for kind in paths.NIFTI_KINDS},
                                "qc": paths.fill(paths.SUBJECT_QC, dataset=name, subject=s)} for s in subjects}
        return groups

    def train_jobs(self) -> str:
        """``jobs.train``: ``per_fold`` (one train / train_stage2 / pretrain_encoder job per trained fold, the
        default) or ``per_model`` (one job per training set, model and run for all the folds the run needs)."""
        return (self.config.get("jobs") or {}).get("train", "per_fold")

    def model_files(self) -> list[str]:
        """Every trained ``model.pt`` the run's targets read: the tables' rows (``all_models``, the training
        curves), the weights of every reconstruction of :meth:`recon_files`, the domain-shift analysis and the
        Stage I model of every Stage II model among them."""
        files = set(self.all_model_files())
        files |= {job["model_file"] for jobs in self.recon_groups().values() for job in jobs if job["model_file"]}
        spec = self.config["report"].get("domain_shift")
        if spec:
            files |= {self.model_file(spec["trainset"], m, RUN, spec.get("fold", 0)) for m in spec["models"]} - {None}
        for file in list(files):
            key = paths.parse(paths.MODEL, file)
            if self.is_stage2(key["model"]):
                files.add(self.stage2_inputs(key["trainset"], key["model"], key["run"], key["fold"])["stage1"])
        return sorted(files)

    def train_groups(self, rule: str | None = None) -> dict[tuple[str, str, str, str], list[dict]]:
        """The model files of :meth:`model_files` (and the encoders their training reads), grouped as the
        ``per_model`` jobs train them.

        Parameters
        ----------
        rule : {"train", "train_stage2", "pretrain_encoder"}, optional
            Only that rule's groups (default: all).

        Returns
        -------
        dict
            ``(rule, trainset, model, run)`` -> one dict per fold, sorted by fold: ``fold``, the outputs and
            workdir of the per-fold rule (``model`` + ``log``, or ``encoder`` + ``log`` for
            ``pretrain_encoder``; ``workdir``), its ``settings`` (the fold's seed) and inputs: ``volumes``,
            ``splits`` and ``encoder`` (None without pre-training) for ``train``; ``stage1``, ``volumes`` and
            ``splits`` for ``train_stage2``; ``volumes`` and ``splits`` for ``pretrain_encoder``.
        """
        groups: dict[tuple[str, str, str, str], dict[int, dict]] = {}

        def add(kind, key, job):
            groups.setdefault((kind, key["trainset"], key["model"], key["run"]), {})[job["fold"]] = job

        for file in self.model_files():
            key = paths.parse(paths.MODEL, file)
            trainset, model, run, fold = key["trainset"], key["model"], key["run"], int(key["fold"])
            job = {"fold": fold, "model": file, "log": paths.fill(paths.TRAIN_LOG, **key),
                   "workdir": paths.fill(paths.TRAIN_WORKDIR, **key), "settings": self.train_settings(model, run, fold)}
            if self.is_stage2(model):
                add("train_stage2", key, {**job, **self.stage2_inputs(trainset, model, run, fold)})
                continue
            data = {"volumes": paths.fill(paths.VOLUMES, dataset=trainset),
                    "splits": paths.fill(paths.SPLITS, dataset=trainset)}
            encoder = self.encoder_file(trainset, model, run, fold)
            add("train", key, {**job, **data, "encoder": encoder})
            if encoder:  # pretrain_from: one encoder shared by several models (dict by fold: once)
                ekey = paths.parse(paths.ENCODER, encoder)
                add("pretrain_encoder", ekey, {
                    "fold": fold, "encoder": encoder, "log": paths.fill(paths.PRETRAIN_LOG, **ekey),
                    "workdir": paths.fill(paths.PRETRAIN_WORKDIR, **ekey),
                    "settings": self.pretrain_settings(ekey["model"], ekey["run"], fold), **data})
        return {key: [jobs[f] for f in sorted(jobs)] for key, jobs in sorted(groups.items())
                if rule is None or key[0] == rule}

    # ------------------------------------------------------------ score and evaluate jobs (config jobs.score, jobs.evaluate)
    def score_jobs(self) -> str:
        """``jobs.score``: ``per_scoring`` (one score job per trained model, dataset and scoring, the default) or
        ``per_model`` (one job per training set, model and run for all its folds, datasets and scorings)."""
        return (self.config.get("jobs") or {}).get("score", "per_scoring")

    def evaluate_jobs(self) -> str:
        """``jobs.evaluate``: ``per_scoring`` (one evaluate, evaluate_protocol, evaluate_fpr or
        evaluate_fpr_protocol job per evaluation, the default) or ``per_model`` (one job per training set, model
        and run for all of them)."""
        return (self.config.get("jobs") or {}).get("evaluate", "per_scoring")

    @staticmethod
    def group_rule(stage: str, *parts: str) -> str:
        """Name of a coarse rule of config ``jobs`` (a Python identifier): ``<stage>__<part>__...``, e.g.
        ``reconstruct__<trainset>__<model>__<run>`` (``t_test~250`` -> ``t_test_250``) or
        ``preprocess__<dataset>``."""
        return f"{stage}__" + "__".join(re.sub(r"\W", "_", part) for part in parts)

    def _read_eval_files(self) -> list[str]:
        """Every score, evaluation and viewer-map file the run's targets read (tables, sweeps, claims, qualitative
        and MHD figures, healthy-FPR and lesion-wise tables, P8.1 analyses, viewer maps; paths of any kind)."""
        files = self._table_sweep_figure_claim_files() + [entry["metrics"] for entry in self.p81_entries()]
        for table in self.healthy_fpr_tables():
            files += self.fpr_files(table)
        files += list(self.mhd_figure_inputs().values()) + self.viewer_map_dirs()
        return files

    def evaluation_keys(self) -> dict[str, list[dict]]:
        """The scorings, evaluations and healthy-FPR evaluations the run's targets read, as wildcard dicts.

        Returns
        -------
        dict
            ``"evaluate"``: ``{trainset, model, run, fold, dataset, scoring, protocol}`` of every evaluation
            (threshold.json + metrics.tsv; a viewer-map folder reads the default one, an fpr.tsv the healthy
            evaluation of its training set under its protocol); ``"fpr"``: the same keys of every fpr.tsv;
            ``"score"``: ``{trainset, model, run, fold, dataset, scoring}`` of every scores file read directly
            or by one of those evaluations. Each list is sorted and free of duplicates; fold is an int.
        """
        patterns = {"evaluate": [paths.THRESHOLD, paths.METRICS, paths.VIEWER_MAPS, paths.PROTOCOL_THRESHOLD,
                                 paths.PROTOCOL_METRICS],
                    "fpr": [paths.FPR_METRICS, paths.PROTOCOL_FPR_METRICS], "score": [paths.SCORES]}
        fields = ("trainset", "model", "run", "fold", "dataset", "scoring", "protocol")

        def as_tuple(key: dict) -> tuple:  # fields in order, fold as int, protocol "default" where none
            key = {"protocol": overrides.DEFAULT, **key, "fold": int(key["fold"])}
            return tuple(key[f] for f in fields)

        keys = {kind: set() for kind in patterns}
        for file in filter(None, self._read_eval_files()):
            for kind, pats in patterns.items():
                key = next(filter(None, (paths.parse(p, file) for p in pats)), None)
                if key:
                    keys[kind].add(as_tuple(key))
        for fpr in keys["fpr"]:  # the healthy evaluation (same model, fold, scoring, protocol) whose thresholds it applies
            keys["evaluate"].add(as_tuple({**dict(zip(fields, fpr)), "dataset": fpr[0]}))
        keys["score"] |= {key[:-1] + (overrides.DEFAULT,) for key in keys["evaluate"] | keys["fpr"]}
        out = {kind: [dict(zip(fields, key)) for key in sorted(keys[kind])] for kind in keys}
        for key in out["score"]:
            del key["protocol"]
        return out

    def score_groups(self) -> dict[tuple[str, str, str], list[dict]]:
        """The score jobs of :meth:`evaluation_keys`, grouped as the ``per_model`` jobs run them.

        Returns
        -------
        dict
            ``(trainset, model, run)`` -> ``[{"fold", "dataset", "scoring", "params" (the ``score`` rule's
            ``params.scoring``), "recon", "volumes", "output"}]`` sorted by fold, dataset and scoring.
        """
        groups: dict[tuple[str, str, str], list[dict]] = {}
        for key in self.evaluation_keys()["score"]:
            recon_key = {k: key[k] for k in ("trainset", "model", "run", "fold", "dataset")}
            groups.setdefault((key["trainset"], key["model"], key["run"]), []).append({
                "fold": key["fold"], "dataset": key["dataset"], "scoring": key["scoring"],
                "params": self.scoring_params(key["scoring"]), "recon": paths.fill(paths.RECON, **recon_key),
                "volumes": paths.fill(paths.VOLUMES, dataset=key["dataset"]),
                "output": paths.fill(paths.SCORES, **key)})
        return dict(sorted(groups.items()))

    def evaluate_groups(self) -> dict[tuple[str, str, str], list[dict]]:
        """The evaluate jobs of :meth:`evaluation_keys` (every evaluate, evaluate_protocol, evaluate_fpr and
        evaluate_fpr_protocol output), grouped as the ``per_model`` jobs run them.

        Returns
        -------
        dict
            ``(trainset, model, run)`` -> jobs, first every evaluation (``"kind": "evaluate"``, with the
            ``evaluate`` rule's params ``role``, ``options``, ``samples``, ``conventions``; inputs ``scores``,
            ``recon``, ``volumes``; outputs ``threshold``, ``metrics``), then every healthy-FPR evaluation
            (``"kind": "fpr"``, params ``options``, ``conventions``; inputs ``scores``, ``volumes``, ``healthy``
            (a threshold.json of an evaluation of the same group); output ``output``), each sorted by fold,
            dataset, scoring and protocol.
        """
        def eval_file(name: str, key: dict) -> str:  # the PROTOCOL_ pattern under a protocol other than default
            return paths.fill(getattr(paths, name if key["protocol"] == overrides.DEFAULT else f"PROTOCOL_{name}"), **key)

        keys = self.evaluation_keys()
        groups: dict[tuple[str, str, str], list[dict]] = {}
        for kind in ("evaluate", "fpr"):
            for key in keys[kind]:
                where = {k: key[k] for k in ("fold", "dataset", "scoring", "protocol")}
                score_key = {k: v for k, v in key.items() if k != "protocol"}
                common = {"kind": kind, **where, "options": self.evaluation_options(key["protocol"]),
                          "conventions": self.evaluation_conventions(key["dataset"]),
                          "scores": paths.fill(paths.SCORES, **score_key),
                          "volumes": paths.fill(paths.VOLUMES, dataset=key["dataset"])}
                if kind == "evaluate":
                    job = {**common, "role": self.datasets[key["dataset"]]["role"],
                           "samples": self.scorings[key["scoring"]].get("samples"),
                           "recon": paths.fill(paths.RECON, **{k: v for k, v in score_key.items() if k != "scoring"}),
                           "threshold": eval_file("THRESHOLD", key), "metrics": eval_file("METRICS", key)}
                else:
                    job = {**common, "healthy": self.healthy_threshold(key["trainset"], key["model"], key["run"],
                                                                       key["fold"], key["scoring"], key["protocol"]),
                           "output": eval_file("FPR_METRICS", key)}
                groups.setdefault((key["trainset"], key["model"], key["run"]), []).append(job)
        return dict(sorted(groups.items()))

    # ------------------------------------------------------------ cross-checks
    def check_config(self) -> None:
        """Cross-references the schema cannot express (datasets, sweeps, weights_from, report, tables)."""
        datasets, models, config = self.datasets, self.models, self.config
        for name, ds in datasets.items():
            if name not in self.synthetic_datasets and ds["source"] not in config["sources"]:
                raise config_error(f"datasets.{name}.source '{ds['source']}' is not defined under sources")
            if ds["role"] == "pathology":
                ts = ds.get("trainset")
                if ts not in datasets or datasets[ts]["role"] != "healthy":
                    raise config_error(f"datasets.{name}.trainset must name a healthy dataset, got {ts!r}")
                if datasets[ts]["sequence"] != ds["sequence"] and not ds.get("cross_sequence"):
                    raise config_error(f"datasets.{name} ({ds['sequence']}) is evaluated with models trained on "
                                       f"{ts} ({datasets[ts]['sequence']}); sequences must match (or set cross_sequence: true)")
        for sname, sweep in self.scoring_sweeps.items():
            for key in ("model", "reference_model"):
                if key in sweep and sweep[key] not in models:
                    raise config_error(f"scoring_sweeps.{sname}.{key}: unknown model {sweep[key]!r}")
            if sweep.get("reference") and sweep["reference"] not in config["scorings"]:
                raise config_error(f"scoring_sweeps.{sname}.reference: unknown scoring {sweep['reference']!r}")
            self._check_pathology(f"scoring_sweeps.{sname}", sweep["datasets"])
        for mname, entry in models.items():
            source = entry.get("weights_from")
            if source is None:
                continue
            if source not in models or models[source].get("weights_from"):
                raise config_error(f"models.{mname}.weights_from: {source!r} must name a model that trains its own "
                                   "weights")
            for key in WEIGHT_KEYS:
                if entry.get(key, models[source].get(key)) != models[source].get(key):
                    raise config_error(f"models.{mname}.{key} differs from models.{source}.{key}; a weights_from "
                                       "model may change only label and reconstruct settings")
        for mname, entry in models.items():
            self._check_pretrain_from(mname, entry)
        for sname, spec in self.model_sweeps.items():
            if sname in self.scoring_sweeps:
                raise config_error(f"sweeps.{sname}: the name is also a scoring sweep; sweep names must be unique")
            if spec.get("x") and spec["x"] not in spec["set"]:
                raise config_error(f"sweeps.{sname}.x: {spec['x']!r} is not a column under set")
            if row_scoring(spec) not in self.scorings:
                raise config_error(f"sweeps.{sname}.scoring: unknown scoring {spec.get('scoring')!r}")
            if spec.get("reference") not in (None, RUN):
                raise config_error(f"sweeps.{sname}.reference: only {RUN!r} (the configured model) can be the "
                                   "reference")
            self._check_pathology(f"sweeps.{sname}", spec["datasets"])
            bad = [f for f in spec.get("folds") or [] if f >= len(self.folds)]
            if bad:
                raise config_error(f"sweeps.{sname}.folds: fold {bad[0]} does not exist (splits.folds is "
                                   f"{len(self.folds)}: folds 0 to {len(self.folds) - 1})")
        from brainuad.evaluation.lesions import normalise_strata  # numpy only (scikit-image is imported lazily)

        try:
            normalise_strata((config["evaluation"].get("lesions") or {}).get("strata"))
        except ValueError as err:
            raise config_error(f"evaluation.lesions.strata: {err}")
        self._check_report()
        self._check_stage2()
        self._check_claims()
        for tname, table in self.tables.items():
            for row in self.table_rows[tname]:
                if row["model"] not in models:
                    raise config_error(f"tables.{tname}: unknown model {row['model']!r}")
                if row["scoring"] not in self.scorings:
                    raise config_error(f"tables.{tname}: unknown scoring {row['scoring']!r}")
            for ds in table["datasets"]:
                if ds not in datasets:
                    raise config_error(f"tables.{tname}: unknown dataset {ds!r}")
                want = "healthy" if table["kind"] == "reconstruction" else "pathology"
                if datasets[ds]["role"] != want:
                    raise config_error(f"tables.{tname} ({table['kind']}) needs {want} datasets, {ds!r} is "
                                       f"{datasets[ds]['role']}")
            self.stats_settings(tname)
            self._check_published(tname)

    def _check_pretrain_from(self, mname: str, entry: dict) -> None:
        """``pretrain_from`` names a model with a ``pretrain`` section (an ``ssl``-backbone model or a cDDPM) whose
        pre-trained encoder has this model's ``ssl`` backbone architecture (channels, blocks, norm, context_dim),
        and excludes a ``pretrain`` section of its own."""
        source = entry.get("pretrain_from")
        if source is None:
            return
        where = f"models.{mname}.pretrain_from"
        if entry.get("pretrain"):
            raise config_error(f"{where}: a model has either its own pretrain section or pretrain_from, not both")
        if source not in self.models or not self.models[source].get("pretrain"):
            raise config_error(f"{where}: {source!r} must name a model with a pretrain section")
        mine = entry_backbone(entry)
        if not mine or mine.get("kind") != "ssl" or \
                ssl_encoder_signature(entry) != ssl_encoder_signature(self.models[source]):
            raise config_error(f"{where}: hparams.backbone must be an ssl backbone with the same channels, blocks, "
                               f"norm, context_dim as the encoder models.{source} pre-trains "
                               f"{ssl_encoder_signature(self.models[source])}")

    def _check_published(self, tname: str) -> None:
        spec = self.tables[tname].get("published")
        if not spec:
            return
        path = Path(self.published_file(tname))
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in path.parent.glob("*.tsv"))) or "none"
            raise config_error(f"tables.{tname}.published.table: {path} does not exist (known: {known})")
        # every row of the table, also those of models without their backbone weights ("not configured" rows)
        labels = [row_label(row, self.models) for row in self.tables[tname]["rows"]]
        for label in spec.get("rows", {}):
            if label not in labels:
                raise config_error(f"tables.{tname}.published.rows: {label!r} is not a row label of the table "
                                   f"({', '.join(labels)})")
        for ds in spec.get("datasets", {}):
            if ds not in self.tables[tname]["datasets"]:
                raise config_error(f"tables.{tname}.published.datasets: {ds!r} is not a dataset of the table")

    def _check_claims(self) -> None:
        ids = [c["id"] for c in self.config.get("claims", [])]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise config_error(f"claims: duplicate id(s) {', '.join(dup)}")
        self.stats_settings()
        for claim in self.config.get("claims", []):
            try:
                stats_lib.settings(self.config.get("stats"), claim.get("stats"))
            except ValueError as err:
                raise config_error(f"claims.{claim['id']}.{err}")
            if claim.get("kind", "metric") == "metric" and not self.claims_missing()[claim["id"]]:
                for ds in claim["datasets"]:
                    want = "healthy" if claim["metric"] in ("ssim", "psnr", "l1", "lpips") else "pathology"
                    if self.datasets[ds]["role"] != want:
                        raise config_error(f"claims.{claim['id']}: metric {claim['metric']} needs {want} datasets, "
                                           f"{ds!r} is {self.datasets[ds]['role']}")

    def _check_pathology(self, where: str, datasets: list[str]) -> None:
        for ds in datasets:
            if ds not in self.datasets or self.datasets[ds]["role"] != "pathology":
                raise config_error(f"{where}: {ds!r} is not a pathology dataset")

    def _check_report(self) -> None:
        report, models, datasets = self.config["report"], self.models, self.datasets
        dsh = report.get("domain_shift")
        if dsh:
            if datasets.get(dsh["trainset"], {}).get("role") != "healthy":
                raise config_error(f"report.domain_shift.trainset: {dsh['trainset']!r} is not a healthy dataset")
            for m in dsh["models"]:
                if m not in models or models[m]["arch"] in LEARNING_FREE:
                    raise config_error(f"report.domain_shift.models: {m!r} is not a trainable model")
        for table in self.qualitative:
            if table not in self.tables or self.tables[table].get("kind", "segmentation") != "segmentation":
                raise config_error(f"report.qualitative: {table!r} is not a segmentation table")
        for key in ("lesionwise", "healthy_fpr"):
            for table in report.get(key) or []:
                if table not in self.tables or self.tables[table].get("kind", "segmentation") != "segmentation":
                    raise config_error(f"report.{key}: {table!r} is not a segmentation table")
        p81 = report.get("p81")
        if p81 and (p81["table"] not in self.tables or self.tables[p81["table"]].get("kind", "segmentation") != "segmentation"):
            raise config_error(f"report.p81.table: {p81['table']!r} is not a segmentation table")
        it = report.get("inference_time")
        if it and it["table"] not in self.tables:
            raise config_error(f"report.inference_time.table: unknown table {it['table']!r}")
        mf = report.get("mhd_figure")
        if mf:
            if mf["model"] not in models or mf["dataset"] not in datasets:
                raise config_error("report.mhd_figure: unknown model or dataset")
            for key in ("mean", "diag", "full"):
                if mf["scorings"][key] not in self.config["scorings"]:
                    raise config_error(f"report.mhd_figure.scorings.{key}: unknown scoring {mf['scorings'][key]!r}")

    def check_sources(self) -> None:
        """Data sources: cohorts, adapter options and per-source preprocess overrides (reads the config
        only; the raw data are first opened by the manifest job)."""
        import jsonschema

        schema = yaml.safe_load((self.basedir / "workflow" / "schemas" / "config.schema.yaml").read_text())
        preprocess_schema = jsonschema.Draft202012Validator(schema["properties"]["preprocess"])
        from brainuad.data.sources import check_options  # numpy/pandas/nibabel, no torch

        for sname, src in self.config["sources"].items():
            check_options(src["kind"], src.get("options", {}), f"sources.{sname}.options")
            if src["kind"] != "phantom":  # phantom cohorts are subject counts, real-data cohorts are options
                for cname, cohort in src.get("cohorts", {}).items():
                    check_options(src["kind"], cohort or {}, f"sources.{sname}.cohorts.{cname}")
            if src.get("preprocess"):
                merged = {**self.config["preprocess"], **src["preprocess"]}
                for error in preprocess_schema.iter_errors(merged):
                    where = ".".join(str(p) for p in error.absolute_path)
                    raise config_error(f"sources.{sname}.preprocess.{where}: {error.message}")
        for name, ds in self.datasets.items():
            if name in self.synthetic_datasets:
                continue
            src = self.source_of(name)
            cohorts = src.get("cohorts", {})
            if src["kind"] == "phantom":
                if ds["cohort"] not in cohorts:
                    raise config_error(f"datasets.{name}.cohort {ds['cohort']!r} is not a cohort of "
                                       f"sources.{ds['source']} ({', '.join(cohorts) or 'none'})")
            elif ds["cohort"] != "all" and ds["cohort"] not in cohorts:
                raise config_error(f"datasets.{name}.cohort {ds['cohort']!r}: use 'all' or a key of "
                                   f"sources.{ds['source']}.cohorts ({', '.join(cohorts) or 'none defined'})")
            ts = ds.get("trainset")
            if ds["role"] == "pathology" and ts in self.datasets:
                mine, theirs = self.preprocess_options(name), self.preprocess_options(ts)
                for key in GRID_KEYS:
                    if mine.get(key) != theirs.get(key):
                        raise config_error(f"datasets.{name}: preprocess {key} {mine.get(key)} differs from that of "
                                           f"its trainset {ts} ({theirs.get(key)}); the volumes must have the same grid")

"""Every rule's conda environment (envs/*.yaml) lists what its script imports.

No conda channel is reachable on the development machines, so the environments are never built here.
Without ``--sdm conda`` a rule runs in the project venv, which has everything; on the cluster it runs in
its env, and Snakemake appends the job's own ``sys.path`` (the controller venv) to every ``script:``, so
a package missing from an env may even be imported from the wrong place silently. This test keeps the
env files honest instead: for each rule it collects the third-party top-level imports of its
``script:`` and, transitively, of every ``brainuad`` module the script imports (``ast``, no import
executed), maps them to distribution names and asserts each is listed in the rule's ``conda:`` file. Imports (and
pandas calls such as ``read_excel``) inside ``try: ... except ImportError`` count as optional.

brainuad itself is not installed into the envs: it is imported from ``src/``, which
``workflow/rules/common.smk`` puts on ``sys.path`` of every Snakemake process and Snakemake hands to the
script (a relative ``pip: -e ../`` would resolve against Snakemake's copy of the env file under
``.snakemake/conda/`` and break env creation).
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVS = ROOT / "envs"
RULES = ROOT / "workflow" / "rules"
SRC = ROOT / "src"
PACKAGE = "brainuad"

# import name -> distribution name (pip spelling; conda spellings are mapped by CONDA_ALIASES)
IMPORT_TO_DIST = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "ants": "antspyx",
    "PIL": "pillow",
    "cv2": "opencv-python",
    "SimpleITK": "simpleitk",
    "nib": "nibabel",
    "dateutil": "python-dateutil",
    "jsonschema": "jsonschema",
}
# conda package names that provide the same import as a pip distribution
CONDA_ALIASES = {
    "pytorch": "torch",
    "pytorch-gpu": "torch",
    "pytorch-cpu": "torch",
    "py-opencv": "opencv-python",
}
# pandas methods that need an optional dependency at call time (not visible as an import)
PANDAS_OPTIONAL = {"to_markdown": "tabulate", "read_excel": "openpyxl", "to_excel": "openpyxl",
                   "read_parquet": "pyarrow", "to_parquet": "pyarrow"}
# always importable in a script job: Snakemake injects itself (the `snakemake` object, its search path)
PROVIDED = {"snakemake"}
STDLIB = set(sys.stdlib_module_names)
# brainuad.lazy imports the submodules that each package's ``lazy_exports(__name__, {submodule: names})``
# call declares; those calls are followed instead of treating its import_module as "any module"
LAZY_LOADER = SRC / PACKAGE / "lazy.py"


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------------------------- env files
def env_packages(path: Path) -> set[str]:
    """Normalised distribution names an env file installs (conda specs and its pip section)."""
    spec = yaml.safe_load(path.read_text())
    names = set()
    for dep in spec.get("dependencies") or []:
        if isinstance(dep, dict):
            for line in dep.get("pip") or []:
                line = str(line).strip()
                if line.startswith("-"):  # --extra-index-url, -e, -r ...
                    continue
                m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
                if m:
                    names.add(norm(m.group(0)))
        else:
            m = re.match(r"(?:[\w.-]+::)?([A-Za-z0-9][A-Za-z0-9._-]*)", str(dep))
            if m:
                name = norm(m.group(1))
                names.add(norm(CONDA_ALIASES.get(name, name)))
    return names


# ---------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    name: str
    smk: Path
    conda: Path | None
    script: Path | None


def _directive(block: str, name: str) -> str | None:
    m = re.search(rf"^\s+{name}:\s*\n\s+[rf]?[\"']([^\"']+)[\"']", block, re.M) or \
        re.search(rf"^\s+{name}:\s*[rf]?[\"']([^\"']+)[\"']", block, re.M)
    return m.group(1) if m else None


def workflow_rules(rules_dir: Path = RULES) -> list[Rule]:
    rules = []
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        heads = list(re.finditer(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", text, re.M))
        for i, head in enumerate(heads):
            block = text[head.end(): heads[i + 1].start() if i + 1 < len(heads) else len(text)]
            conda, script = _directive(block, "conda"), _directive(block, "script")
            rules.append(Rule(head.group(1), smk,
                              (smk.parent / conda).resolve() if conda else None,
                              (smk.parent / script).resolve() if script else None))
    return rules


# ---------------------------------------------------------------------------------------------- imports
def _module_file(module: str, src: Path) -> Path | None:
    base = src.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _show(path: Path) -> str:
    return str(path.relative_to(ROOT)) if ROOT in path.parents else str(path)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _optional_nodes(tree: ast.AST) -> set[ast.AST]:
    """Nodes inside `try:` blocks that handle ImportError/ModuleNotFoundError (optional dependencies)."""
    out = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        names = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            names |= {t.id for t in types if isinstance(t, ast.Name)}
        if names & {"ImportError", "ModuleNotFoundError"}:
            out |= {sub for stmt in node.body for sub in ast.walk(stmt)}
    return out


def third_party_imports(script: Path, src: Path = SRC, package: str = PACKAGE) -> dict[str, str]:
    """{distribution: "where it is imported"} for a script and every local module it reaches."""
    found: dict[str, str] = {}
    todo, seen = [script], set()
    local_dir = script.parent

    def want_module(module: str) -> None:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__, a/b/c
            f = _module_file(".".join(parts[:i]), src)
            if f is not None:
                todo.append(f)

    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        optional = _optional_nodes(tree)
        in_src = src in path.parents
        here = _module_name(path, src) if in_src else None
        pkg = (here if _is_package(path) else here.rpartition(".")[0]) if in_src else None
        for node in ast.walk(tree):
            if node in optional:  # guarded by `except ImportError`: an optional dependency
                continue
            targets: list[tuple[str, list[str]]] = []
            if isinstance(node, ast.Import):
                targets = [(alias.name, []) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import inside the package
                    if not in_src:
                        continue
                    base = pkg.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [(mod, [a.name for a in node.names])]
            elif (in_src and isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "lazy_exports" and len(node.args) > 1 and isinstance(node.args[1], ast.Dict)):
                targets = [(f"{pkg}.{key.value}", []) for key in node.args[1].keys
                           if isinstance(key, ast.Constant) and isinstance(key.value, str)]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and path != LAZY_LOADER):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    targets = [(arg.value, [])]
                elif in_src:  # dynamic: assume any module of this package may be loaded
                    pkg_dir = src.joinpath(*pkg.split("."))
                    todo.extend(pkg_dir.glob("*.py"))
            elif isinstance(node, ast.Attribute) and node.attr in PANDAS_OPTIONAL:
                found.setdefault(PANDAS_OPTIONAL[node.attr], f"{_show(path)} (pandas .{node.attr})")
            for mod, names in targets:
                top = mod.split(".")[0]
                if not top or top in STDLIB or top in PROVIDED:
                    continue
                if top == package:
                    want_module(mod)
                    for name in names:  # `from pkg import submodule`
                        if _module_file(f"{mod}.{name}", src) is not None:
                            want_module(f"{mod}.{name}")
                    continue
                if (local_dir / f"{top}.py").is_file() or (local_dir / top / "__init__.py").is_file():
                    target = local_dir / f"{top}.py"
                    todo.append(target if target.is_file() else local_dir / top / "__init__.py")
                    continue
                found.setdefault(norm(IMPORT_TO_DIST.get(top, top)), _show(path))
    return found


def missing_packages(script: Path, env: Path, src: Path = SRC) -> dict[str, str]:
    have = env_packages(env)
    return {dist: where for dist, where in third_party_imports(script, src).items() if dist not in have}


# ---------------------------------------------------------------------------------------------- tests
RULE_LIST = workflow_rules()
SCRIPT_RULES = [r for r in RULE_LIST if r.script is not None]


def test_rules_were_found():
    names = {r.name for r in SCRIPT_RULES}
    assert {"train", "reconstruct", "score", "evaluate", "report"} <= names, names


@pytest.mark.parametrize("env", sorted(ENVS.glob("*.yaml")), ids=lambda p: p.name)
def test_env_file_is_pinned_and_consistent_with_constraints(env):
    spec = yaml.safe_load(env.read_text())
    assert spec.get("channels"), f"{env.name}: no channels"
    deps = spec.get("dependencies") or []
    assert any(str(d).startswith("python=3.11") for d in deps), f"{env.name}: pin python=3.11 (the venv's)"
    constraints = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            constraints[norm(name)] = version.strip()
    for dep in deps:
        if not isinstance(dep, dict):
            continue
        for line in dep.get("pip") or []:
            line = str(line).strip()
            if line.startswith("-e") or (not line.startswith("-") and ("/" in line or line.startswith("."))):
                pytest.fail(f"{env.name}: '{line}': a local path in pip: resolves against Snakemake's copy of "
                            "the env file (.snakemake/conda/), not envs/; brainuad comes from src/ instead")
            if line.startswith("-"):
                continue
            m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
            assert m, f"{env.name}: pip requirement '{line}' is not pinned with =="
            name, version = norm(m.group(1)), m.group(2)
            if name in constraints:
                assert version.split("+")[0] == constraints[name], (
                    f"{env.name}: {name}=={version} but constraints.txt pins {constraints[name]}")


def test_every_script_rule_has_an_existing_env():
    for rule in SCRIPT_RULES:
        assert rule.conda is not None, f"rule {rule.name} ({rule.smk.name}) has a script but no conda: env"
        assert rule.conda.is_file(), f"rule {rule.name}: {rule.conda} does not exist"
        assert rule.script.is_file(), f"rule {rule.name}: {rule.script} does not exist"


@pytest.mark.parametrize("rule", SCRIPT_RULES, ids=lambda r: r.name)
def test_env_lists_every_import_of_the_script(rule):
    missing = missing_packages(rule.script, rule.conda)
    assert not missing, (
        f"rule {rule.name}: {rule.conda.relative_to(ROOT)} lacks "
        + ", ".join(f"{dist} (imported in {where})" for dist, where in sorted(missing.items())))


def test_checker_catches_a_new_import(tmp_path):
    """A deliberately broken copy: an import added to a script (directly or through brainuad) without
    updating the env file must be reported; listing it fixes it."""
    env = tmp_path / "env.yaml"
    env_text = "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n" \
               "      - numpy==2.3.5\n      - scipy==1.15.3\n"
    env.write_text(env_text)
    script = tmp_path / "script.py"
    script.write_text("import os\nimport numpy as np\nfrom sklearn.metrics import roc_auc_score\n"
                      "def f():\n    import yaml  # lazy imports count too\n"
                      "try:\n    import h5py\nexcept ImportError:  # optional: not required\n    h5py = None\n")
    assert set(missing_packages(script, env)) == {"scikit-learn", "pyyaml"}

    # transitively through the library: brainuad.evaluation.metrics imports skimage, data.splits sklearn
    script.write_text("from brainuad.evaluation.metrics import segmentation_metrics\n"
                      "from brainuad.data.splits import healthy_splits\n")
    missing = missing_packages(script, env)
    assert {"scikit-image", "scikit-learn"} <= set(missing), missing
    assert "brainuad/evaluation/metrics.py" in missing["scikit-image"]
    # through a lazy package export (brainuad.lazy): the declared submodule counts
    script.write_text("from brainuad.evaluation import reconstruction_metrics\n")
    assert "scikit-image" in missing_packages(script, env)

    env.write_text(env_text + "      - scikit-image==0.26.0\n      - scikit-learn==1.9.1\n")
    assert not {"scikit-image", "scikit-learn"} & set(missing_packages(script, env))


def test_broken_copy_of_a_real_script_is_caught(tmp_path):
    rule = next(r for r in SCRIPT_RULES if r.name == "score")
    copy = tmp_path / rule.script.name
    copy.write_text(rule.script.read_text() + "\nimport h5py  # added without touching the env\n")
    assert missing_packages(rule.script, rule.conda) == {}
    assert set(missing_packages(copy, rule.conda)) == {"h5py"}


def test_checker_follows_relative_and_dynamic_imports(tmp_path):
    src = tmp_path / "src"
    pkg = src / PACKAGE / "sub"
    pkg.mkdir(parents=True)
    (src / PACKAGE / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("import importlib\nfrom .a import x\n"
                                     "def load(n):\n    importlib.import_module(f'{__name__}.{n}')\n")
    (pkg / "a.py").write_text("import numpy\nx = 1\n")
    (pkg / "b.py").write_text("import h5py\n")  # only reachable through the dynamic import
    script = tmp_path / "s.py"
    script.write_text(f"from {PACKAGE}.sub import load\nimport helper\n")
    (tmp_path / "helper.py").write_text("import tabulate\n")  # a sibling module of the script
    assert set(third_party_imports(script, src)) == {"numpy", "h5py", "tabulate"}

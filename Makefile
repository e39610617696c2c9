# brainuad: the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
# Some machines export PYTHONDONTWRITEBYTECODE=1; with it every Snakemake job would recompile torch,
# antspyx, ... from source (2x slower jobs). The install skips byte-compiling everything (4 min on
# 2 cores); Python caches what is actually imported, once, inside .venv.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-slurm install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q --no-compile -r requirements.txt -c constraints.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed

demo: install
	@start=$$(date +%s); \
	$(BIN)/snakemake --cores $(CORES) all_tables && \
	$(BIN)/snakemake --report results/report/benchmark.html all_tables > logs/report_html.log 2>&1 && \
	echo "Report: $$(pwd)/results/report/benchmark.pdf and the interactive $$(pwd)/results/report/benchmark.html" && \
	echo "  (tables in results/tables/, $$(( $$(date +%s) - start )) s)"

test: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q

# A one-node SLURM (apt-get installs slurm-wlm and munge when missing; needs root) runs the smoke workflow
# through profiles/slurm (about 15 min on 2 cores); plus the profile checks that need no cluster. .ci/run runs it.
test-slurm: install
	BRAINUAD_SLURM_TESTS=1 PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -s tests/slurm

clean:
	rm -rf results logs work .snakemake tests/smoke/results

#!/usr/bin/env bash
# One prepared GPU throughput check (benchmarks/gpu_check.py) at thesis size, under 8 minutes on one GPU.
# Writes benchmarks/results/gpu_check-<mode>-<date>.{txt,json}; the JSON feeds benchmarks/bench_cost.py.
#   benchmarks/gpu_check.sh            # on the GPU node (the repository's .venv, or $PYTHON)
#   benchmarks/gpu_check.sh --quick    # tiny models on a CPU: checks that the script runs (about a minute)
# On a GPU it also measures torch.compile of the cDDPM (--no-compile skips it). Extra arguments go to
# gpu_check.py (--steps N, --volumes N, --memory-mb MB, --device ...).
# GPU_CHECK_TIMEOUT (seconds, default 470) bounds the run so that a rerun fits a 15-minute allocation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
mode=gpu
for arg in "$@"; do [ "$arg" = "--quick" ] && mode=quick; done
stamp="$(date +%Y%m%d-%H%M%S)"
mkdir -p benchmarks/results
out="benchmarks/results/gpu_check-${mode}-${stamp}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
set +e
compile=--compile
[ "$mode" = quick ] && compile=
for arg in "$@"; do [ "$arg" = "--no-compile" ] && compile=; done
args=(); for arg in "$@"; do [ "$arg" != "--no-compile" ] && args+=("$arg"); done
timeout "${GPU_CHECK_TIMEOUT:-470}" "$PY" benchmarks/gpu_check.py --out "${out}.json" $compile "${args[@]}" 2>&1 | tee "${out}.txt"
rc=${PIPESTATUS[0]}
set -e
echo "gpu_check: exit ${rc}; output ${out}.txt (and .json when it finished)"
exit "$rc"

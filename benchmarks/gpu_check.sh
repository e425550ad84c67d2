#!/usr/bin/env bash
# One command that checks survpgc on a GPU (or, at small sizes, on the CPU): extraction with the UNI architecture,
# training step times, the CUDA training paths, and the C-index of a short cross-validation on the device vs the CPU.
#
#   bash benchmarks/gpu_check.sh                                  # GPU machine: cuda, full sizes, < 8 min on one GPU
#   bash benchmarks/gpu_check.sh --device cpu                     # CPU, small sizes (the test suite's smoke run)
#   bash benchmarks/gpu_check.sh --json results.json              # also every number as JSON
#   bash benchmarks/gpu_check.sh --help                           # every option (sizes, sections, tolerances)
#
# Exit status: 0 all checks passed, 1 a check failed, 2 it could not start, 124 it ran past GPU_CHECK_TIMEOUT
# seconds (default 480). PYTHON selects the interpreter (default: .venv/bin/python when present, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # a checkout works without pip install -e .
exec timeout --signal=TERM --kill-after=15 "${GPU_CHECK_TIMEOUT:-480}" "$PYTHON" benchmarks/gpu_check.py "$@"

#!/usr/bin/env bash
# GPU check of the batched torch backend: CUDA vs CPU agreement, CUDA-graph capture, the
# benchmark table on the GPU and one decoding step of a random ~1B model for scale.
# Run from the repository root on a machine with a CUDA build of torch:
#     bash benchmarks/gpu_check.sh            (PYTHON=... to pick the interpreter)
# Kept under about five minutes.
set -u
cd "$(dirname "$0")/.." || exit 1
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: no '$PY' on PATH (set PYTHON=/path/to/python)" >&2
    exit 2
fi
if ! "$PY" -c 'import torch' >/dev/null 2>&1; then
    echo "gpu_check: '$PY -c \"import torch\"' fails: torch (a CUDA build) must be installed" >&2
    exit 2
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch is installed but sees no CUDA device" \
         "($("$PY" -c 'import torch; print(torch.__version__)'))" >&2
    exit 3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout 330 "$PY" benchmarks/gpu_check.py "$@"

#!/usr/bin/env bash
# MeDiM paper-geometry smoke benchmark on one H100/H200 (<= 8 minutes): training tokens/s, MFU, peak memory;
# MaskGIT sampling at 32/64/128 steps (images/s); the same backbone decoding autoregressively with a KV cache.
#   benchmarks/gpu_smoke.sh [--out smoke.json] [--peak-tflops 989] ...   (args go to gpu_smoke.py)
#   benchmarks/gpu_smoke.sh --dry-run                                    (tiny geometry on CPU)
# Without a GPU (and without --dry-run) it prints "no CUDA device: skipped" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if [[ " $* " != *" --dry-run "* ]] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "no CUDA device: skipped"
  exit 0
fi
exec timeout 480 "$PY" benchmarks/gpu_smoke.py "$@"

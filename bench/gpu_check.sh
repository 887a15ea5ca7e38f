#!/usr/bin/env bash
# The GPU check, prepared to run unattended on a lent GPU machine: the default method (dpmerf),
# dpgan and dpdiffusion on MNIST 28x28 and CIFAR-10 32x32 colour, each with its quick evaluation;
# times and quality JSON under $OUT/gpu_check (or bench/results/gpu_check).
#
#   bash bench/gpu_check.sh                        # CUDA, method defaults
#   bash bench/gpu_check.sh --epochs 2             # cap the DP-SGD methods for a short slot
#   bash bench/gpu_check.sh --device cpu --smoke   # seconds on CPU (tests/bench/test_gpu_check.py)
#
# Everything else is bench/gpu_check.py; this wrapper fixes the interpreter path and records the
# GPU as nvidia-smi sees it, so the script needs nothing installed beyond the package's own needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# this tree's source first: the check must test what is checked out, not an installed copy
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,utilization.gpu --format=csv,noheader \
    || true
fi
exec "${PYTHON:-python}" bench/gpu_check.py "$@"

#!/usr/bin/env bash
# The GPU check of issue 18 on a lent GPU, at most 8 minutes in all: MFU per rung alone and packed, compiled;
# the largest rung per attention backend and at head_dim 128; tests/test_gpu.py. Writes
# benchmarks/gpu/<device>_<date>.md (under $OUT when set). What it measures: scripts/gpu_check.py.
#
#   bash scripts/gpu_check.sh              # on the GPU machine, from anywhere in the repo
#   bash scripts/gpu_check.sh --dry-run    # the same plumbing on the CPU, in a minute (tests/test_gpu_check.py)
#
# Python: $PYTHON, else .venv/bin/python, else python3 when it imports the project's needs; else `make
# install` (needs the package index) within its own 150 s. Extra arguments go to gpu_check.py (--budget,
# --seconds, --pack).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TESTBED_TRACK=none WANDB_MODE=offline
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch, transformers, accelerate, omegaconf" 2>/dev/null; then
  echo "gpu_check: $PY lacks the project's packages; make install (at most 150 s)" >&2
  timeout 150 make install >&2 && PY=.venv/bin/python
fi
started=$(date +%s)
timeout --signal=TERM --kill-after=10 $((480 - 15)) "$PY" scripts/gpu_check.py "$@"
code=$?
echo "gpu_check: exit $code after $(( $(date +%s) - started )) s" >&2
exit $code

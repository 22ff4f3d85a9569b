#!/usr/bin/env bash
# The one prepared check of the CUDA path, for a session lent a GPU machine (the device tool's
# `run`, from the repository root). It has never run yet: no session so far was lent a GPU.
#
#   1. installs eclsr with torch's default (CUDA) wheel in a fresh venv;
#   2. the test suite with CUDA visible (tests pick CPU themselves; a crash on import or in the
#      device-resolving code paths shows here);
#   3. `eclsr bench` at the paper preset (H256) on the ML-1m-shaped synthetic data: s/batch, MFU;
#   4. a short paper-preset run (2 epochs of ECL-SR on a synthetic dataset the size of Toys).
#
# Everything it prints goes to $OUT/gpu_check.log (the device tool brings $OUT back). Each step
# runs even if an earlier one failed; the exit code is the number of failed steps.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee "$LOG") 2>&1
export PYTHONUNBUFFERED=1
failed=0
step() {
    echo "=== $1 ($(date -u +%T))"
    shift
    if ! "$@"; then
        echo "=== FAILED: $*"
        failed=$((failed + 1))
    fi
}

nvidia-smi || true
step "install" bash -c 'python3 -m venv /tmp/gpu-venv && /tmp/gpu-venv/bin/pip install -q torch && /tmp/gpu-venv/bin/pip install -q -e ".[dev]"'
PY=/tmp/gpu-venv/bin/python
step "torch sees CUDA" "$PY" -c "import torch; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name())"
step "tests" timeout 900 "$PY" -m pytest tests -q -x -p no:cacheprovider
step "bench, paper preset (H256, L200)" timeout 600 /tmp/gpu-venv/bin/eclsr bench \
    --dataset ml-1m-synthetic --preset paper --models sasrec,ecl-sr --max-batches 20 --warmup 3 \
    --json "$OUT/bench-paper.json"
step "short paper-preset run" timeout 900 /tmp/gpu-venv/bin/eclsr run recipes/ecl-sr/toys.toml \
    --set data.dataset=synthetic --set data.synthetic_users=19412 --set data.synthetic_items=11924 \
    --set train.epochs=2 --set train.device=cuda --out "$OUT/run-paper" --overwrite --no-progress
echo "=== done: $failed failed step(s)"
exit "$failed"

#!/usr/bin/env bash
# The one prepared check of the CUDA path, for a session lent a GPU machine. It has never run yet:
# no session so far was lent a GPU.
#
# The device machine reaches no network, so nothing can be installed there from an index. Its
# image holds torch (with CUDA), numpy, pluggy, rich, pyyaml, scipy, pytest, pytest-xdist and
# hypothesis, but not pydantic (see ../.library/device/KINDS.md). So it takes two steps:
#
#   bash tools/gpu_check.sh prepare     # here: pydantic's wheels (cp312) and an eclsr wheel into .whl/
#   device tool: run(command="bash tools/gpu_check.sh", carry=[".whl"], timeout_s=570)
#
# On the device machine it then, within about eight minutes (a command may run ten, the session
# has fifteen, starting the machine included):
#   1. installs the carried wheels into /tmp/site (no index, no dependencies resolved);
#   2. checks that torch sees CUDA;
#   3. `eclsr bench` at the paper preset (H256, L200) on the ML-1m-shaped synthetic data: s/batch, MFU;
#   4. a short paper-preset run (2 epochs of ECL-SR on synthetic data the size of Toys) on CUDA;
#   5. the test suite with CUDA visible (runs on `device = "auto"` then take the GPU), in the time left.
#
# Everything it prints goes to $OUT/gpu_check.log (the device tool brings $OUT back). Each step
# runs even if an earlier one failed; the exit code is the number of failed steps.
set -u
cd "$(dirname "$0")/.."

# Versions of the wheels carried for what the image lacks; they match what CI installs here.
CARRIED=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typing-extensions==4.16.0)

prepare() {
    set -e
    local py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python # its setuptools builds eclsr's wheel offline
    rm -rf .whl && mkdir .whl
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${CARRIED[@]}"
    "$py" -m pip wheel --quiet --no-deps --no-build-isolation -w .whl .
    mkdir -p .git/info
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
    ls -l .whl
    echo "now: the device tool's run with command 'bash tools/gpu_check.sh', carry ['.whl'], timeout_s 570"
}

if [ "${1:-}" = "prepare" ]; then
    prepare
    exit
fi

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
START=$SECONDS
BUDGET=${GPU_CHECK_SECONDS:-480} # the whole script; the tests get what the other steps leave
failed=0
step() {
    echo "=== $1 ($((SECONDS - START)) s)"
    shift
    if ! "$@"; then
        echo "=== FAILED: $*"
        failed=$((failed + 1))
    fi
}

nvidia-smi || true
if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "=== no .whl/: run 'bash tools/gpu_check.sh prepare' here first and carry .whl"
    exit 1
fi
step "install the carried wheels" python3 -m pip install --quiet --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
step "torch sees CUDA" python3 -c "import torch, eclsr; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name(), eclsr.__file__)"
step "bench, paper preset (H256, L200)" timeout 120 python3 -m eclsr bench \
    --dataset ml-1m-synthetic --preset paper --models sasrec,ecl-sr --max-batches 10 --warmup 3 \
    --json "$OUT/bench-paper.json"
step "short paper-preset run on CUDA" timeout 150 python3 -m eclsr run recipes/ecl-sr/toys.toml \
    --set data.dataset=synthetic --set data.synthetic_users=19412 --set data.synthetic_items=11924 \
    --set train.epochs=2 --set train.device=cuda --out /tmp/run-paper --overwrite --no-progress
cp /tmp/run-paper/results.json "$OUT/run-results.json" 2>/dev/null   # small files only: at most
cp /tmp/run-paper/metrics.jsonl "$OUT/run-metrics.jsonl" 2>/dev/null # 8 files come back
LEFT=$((BUDGET - (SECONDS - START)))
if [ "$LEFT" -gt 60 ]; then
    # xdist spreads the suite over the machine's cores; -x stops at the first failure.
    step "tests with CUDA visible (${LEFT} s)" timeout "$LEFT" python3 -m pytest tests -q -x \
        -p no:cacheprovider -n 8
else
    echo "=== tests skipped: ${LEFT} s left"
fi
echo "=== done in $((SECONDS - START)) s: $failed failed step(s)"
exit "$failed"

#!/usr/bin/env bash
# The one prepared check of the CUDA path, for a session lent a GPU machine (15 device minutes a
# task, the machine's start included; one command may run ten).
#
# The device machine reaches no network, so nothing can be installed there from an index. Its
# image holds torch (with CUDA), numpy, pluggy, rich, pyyaml, scipy, pytest, pytest-xdist and
# hypothesis, but not pydantic (see ../.library/device/KINDS.md). So it takes two steps:
#
#   bash tools/gpu_check.sh prepare     # here: pydantic's wheels (cp312), an eclsr wheel into .whl/,
#                                       # Sports and Toys into .gpu_data/
#   device tool: run(command="bash tools/gpu_check.sh", carry=[".whl", ".gpu_data"], timeout_s=570)
#
# On the device machine, within GPU_CHECK_SECONDS (default 480):
#   1. installs the carried wheels into the image's python3 (no index, no dependencies resolved);
#   2. checks that torch sees CUDA;
#   3. starts the paper preset (H256, lr 1e-4; recipes/{sasrec,ecl-sr}/{toys,sports}.toml) on CUDA
#      in the background: four runs on one GPU, for as long as the budget lets them; first their
#      recipes are validated with PAPER_EXTRA (as `prepare` does here), and none starts if one fails;
#   4. `eclsr bench` at the paper preset (H256, L200) on the ML-1m-shaped synthetic data;
#   5. a CUDA smoke of every model family (one epoch on small synthetic data), then `eclsr
#      evaluate` and `eclsr resume` of one of those runs on CUDA;
#   6. the test suite with CUDA visible, in the time left;
#   7. stops the paper runs (SIGTERM: each stops after its step, resumable), scores each one's
#      best epoch on the test split (`eclsr evaluate`), and packs their small files.
#
# Its first run (one H200, 2026-12-04; results/paper-preset-gpu/) found: every model family,
# evaluate and resume work on CUDA (evaluate re-scores results.json exactly); 2-process DDP on one
# GPU died in set_device (fixed: auto falls back to the CPU, cuda names --nproc); bench's MFU used
# the CPU's matmul peak (fixed); two tests read words out of table titles that long paths wrapped
# (fixed); the wheel-install tests lost pydantic through PYTHONPATH (the wheels now go into the
# image's python3).
#
# Everything comes back in $OUT (the device tool brings back 8 files at most): gpu_check.log,
# bench-paper.json, paper-runs.tgz. Each step runs even if an earlier one failed; the exit code is
# the number of failed steps.
#
# Knobs: GPU_CHECK_SECONDS (budget), GPU_CHECK_PAPER_MODELS / GPU_CHECK_PAPER_DATASETS (which paper
# runs), PAPER_EXTRA (KEY=VALUE overrides of the paper runs, e.g. "seed=43"; give `prepare` the same
# to validate them here), GPU_CHECK_PAPER_ONLY=1 (skip steps 4-6), GPU_CHECK_STOP_RESERVE (seconds
# for step 7).
#
# Rehearse it here on the CPU first (a script error costs device minutes):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SECONDS=200 PY=.venv/bin/python OUT=/tmp/gpu_rehearsal \
#       PAPER_EXTRA="data.dataset=synthetic data.synthetic_users=300 train.epochs=3" bash tools/gpu_check.sh
# and with GPU_CHECK_PAPER_ONLY=1 GPU_CHECK_SECONDS=120 (train.epochs=50): the paper runs stopped and scored.
set -u
cd "$(dirname "$0")/.."

# Versions of the wheels carried for what the image lacks; they match what CI installs here.
CARRIED=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    typing-extensions==4.16.0)
PAPER_DATASETS=(toys sports)
PAPER_MODELS=(${GPU_CHECK_PAPER_MODELS:-ecl-sr sasrec}) # e.g. ecl-sr alone, to finish one run
paper_datasets=(${GPU_CHECK_PAPER_DATASETS:-${PAPER_DATASETS[@]}}) # the paper runs' datasets

paper_sets=()
for kv in ${PAPER_EXTRA:-}; do paper_sets+=(--set "$kv"); done # e.g. seed=43; rehearsal: synthetic data

# Every paper run's recipe with PAPER_EXTRA, validated: a typo (train.seed for seed) fails here in
# seconds, where a paper run would die at its start and leave the budget's minutes to nothing.
paper_recipes_valid() { # PYTHON [--set KEY=VALUE ...]
    local py=$1 bad=0 dataset model
    shift
    for dataset in "${paper_datasets[@]}"; do
        for model in "${PAPER_MODELS[@]}"; do
            "$py" -m eclsr validate "recipes/$model/$dataset.toml" "${paper_sets[@]}" "$@" \
                >/dev/null || bad=1
        done
    done
    return "$bad"
}

prepare() {
    set -e
    local py=python3
    [ -x .venv/bin/python ] && py=.venv/bin/python # its setuptools builds eclsr's wheel offline
    rm -rf .whl .gpu_data && mkdir .whl .gpu_data
    "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${CARRIED[@]}"
    "$py" -m pip wheel --quiet --no-deps --no-build-isolation -w .whl .
    local data=${ECLSR_DATA_DIR:-../shared/data}
    for name in "${PAPER_DATASETS[@]}"; do cp "$data/$name.txt" .gpu_data/; done
    mkdir -p .git/info
    for ignored in /.whl/ /.gpu_data/; do
        grep -qx "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >>.git/info/exclude
    done
    ls -l .whl .gpu_data
    paper_recipes_valid "$py" # with the PAPER_EXTRA the device call will be given
    echo "now: the device tool's run with command 'bash tools/gpu_check.sh', carry ['.whl', '.gpu_data'], timeout_s 570"
}

if [ "${1:-}" = "prepare" ]; then
    prepare
    exit
fi

OUT=${OUT:-/tmp/gpu_check}
PY=${PY:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
BUDGET=${GPU_CHECK_SECONDS:-480} # the whole script; the tests get what the other steps leave
STOP_RESERVE=${GPU_CHECK_STOP_RESERVE:-75} # seconds kept back to stop, score and pack the paper runs
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
START=$SECONDS
failed=0
step() {
    echo "=== $1 ($((SECONDS - START)) s)"
    shift
    if ! "$@"; then
        echo "=== FAILED: $*"
        failed=$((failed + 1))
    fi
}
left() { echo $((BUDGET - (SECONDS - START))); }

nvidia-smi || true
if [ "$DEVICE" = cuda ]; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "=== no .whl/: run 'bash tools/gpu_check.sh prepare' here first and carry .whl"
        exit 1
    fi
    # Into the image's interpreter itself, not a --target folder on PYTHONPATH: the tests that
    # install eclsr's wheel into a fresh folder set PYTHONPATH to it and lost pydantic that way.
    step "install the carried wheels" "$PY" -m pip install --quiet --no-index --no-deps \
        --no-compile --no-cache-dir --upgrade .whl/*.whl
    step "torch sees CUDA" "$PY" -c "import torch, eclsr; assert torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name(), eclsr.__file__)"
fi

# 3. The paper preset in the background: the GPU is far from full with one run of this size.
export ECLSR_DATA_DIR=$PWD/.gpu_data
PAPER=/tmp/paper
rm -rf "$PAPER" && mkdir -p "$PAPER"
paper_pids=()
failed_before=$failed
step "the paper recipes are valid with PAPER_EXTRA (${PAPER_EXTRA:-none})" \
    paper_recipes_valid "$PY" --set train.device="$DEVICE"
[ "$failed" -gt "$failed_before" ] && paper_datasets=() # none started: the error above says why
for dataset in "${paper_datasets[@]}"; do
    for model in "${PAPER_MODELS[@]}"; do
        name=$model-$dataset
        "$PY" -m eclsr run "recipes/$model/$dataset.toml" --set train.device="$DEVICE" \
            "${paper_sets[@]}" --out "$PAPER/$name" --no-progress >"$PAPER/$name.log" 2>&1 &
        paper_pids+=($!)
        echo "=== paper preset $name started (pid $!)"
    done
done

if [ -z "${GPU_CHECK_PAPER_ONLY:-}" ]; then # set: the paper runs alone (finish one; rehearse the stop)
step "bench, paper preset (H256, L200)" timeout 90 "$PY" -m eclsr bench \
    --dataset ml-1m-synthetic --preset paper --models sasrec,ecl-sr --max-batches 10 --warmup 3 \
    --set train.device="$DEVICE" --json "$OUT/bench-paper.json"

# 5. Every model family on CUDA, one epoch of small synthetic data: the paths the tests take on CPU.
SMOKE=/tmp/smoke
rm -rf "$SMOKE"
smoke() { # NAME RECIPE [KEY=VALUE ...]
    local name=$1 recipe=$2 sets=()
    shift 2
    for kv in "$@"; do sets+=(--set "$kv"); done
    timeout 60 "$PY" -m eclsr run "$recipe" --set data.dataset=synthetic \
        --set data.synthetic_users=300 --set data.synthetic_items=200 --set train.epochs=1 \
        --set train.device="$DEVICE" "${sets[@]}" --out "$SMOKE/$name" --no-progress \
        >"$SMOKE-$name.log" 2>&1 || { tail -n 25 "$SMOKE-$name.log"; return 1; }
    grep -q "\"device\": \"$DEVICE" "$SMOKE/$name/results.json" ||
        { echo "$recipe did not record device $DEVICE"; return 1; }
}
for recipe in ecl-sr-code sasrec icl-sr-code ridl-sr-code baselines/bert4rec-code \
    baselines/cl4srec-code baselines/duorec-unsup-code baselines/elecrec-code \
    baselines/gru4rec-code baselines/pop; do
    step "smoke on $DEVICE: $recipe" smoke "$(basename "$recipe")" "recipes/$recipe/toys.toml"
done
step "smoke on $DEVICE: ecl-sr-code, every prefix, 64 sampled negatives, bf16 autocast" smoke \
    ecl-sr-sampled-bf16 recipes/ecl-sr-code/toys.toml train.examples.mode=prefixes \
    "heads[0].sampled_negatives=64" train.amp=bf16
first=$SMOKE/ecl-sr-code
step "evaluate on $DEVICE (re-scores results.json exactly?)" timeout 60 "$PY" -m eclsr evaluate "$first" --device "$DEVICE"
step "resume on $DEVICE (one more epoch)" timeout 60 "$PY" -m eclsr resume "$first" \
    --set train.epochs=2 --out "$SMOKE/ecl-sr-code-resumed" --no-progress

LEFT=$(($(left) - STOP_RESERVE))
if [ "$LEFT" -gt 45 ]; then
    # xdist spreads the suite over the machine's cores.
    step "tests with CUDA visible (${LEFT} s)" timeout "$LEFT" "$PY" -m pytest tests -q \
        --maxfail=10 -p no:cacheprovider -n 8
else
    echo "=== tests skipped: ${LEFT} s left"
fi
fi

# 7. Stop the paper runs where they are, score each one's best epoch on the test split, pack.
running() { for pid in "${paper_pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
while running && [ "$(left)" -gt "$STOP_RESERVE" ]; do sleep 2; done
echo "=== stopping the paper runs ($((SECONDS - START)) s)"
if [ "${#paper_pids[@]}" -gt 0 ]; then # an empty list would make `wait` wait for the log's tee
    kill -TERM "${paper_pids[@]}" 2>/dev/null
    wait "${paper_pids[@]}" 2>/dev/null
fi
scoring=()
for run in "$PAPER"/*/; do
    [ -d "$run" ] || continue # no run folder: the glob stayed unexpanded
    name=$(basename "$run")
    tail -n 4 "$PAPER/$name.log"
    [ -f "$run/results.json" ] && continue # finished within the budget: scored already
    [ -f "$run/best.pt" ] || continue
    # `eclsr evaluate` takes finished runs only; this scores the best epoch so far, both seen rules.
    timeout 45 "$PY" - "$run" "$DEVICE" >"$PAPER/$name.best-so-far.json" 2>&1 <<'PYTHON' &
import json, sys
from pathlib import Path

import torch
from eclsr.data.splits import make_split
from eclsr.engine.train import evaluate_split
from eclsr.results.inference import Recommender, with_seen_items_rule

run, device = Path(sys.argv[1]), torch.device(sys.argv[2])
rec = Recommender.from_run(run, device=device)
scores = {"run": run.name, "note": "best epoch so far of a run stopped by the time budget"}
for split in ("valid", "test"):
    windows = make_split(rec.data, rec.max_len).evaluation(split)
    for seen in (False, True):
        recipe = with_seen_items_rule(rec.recipe, seen)
        metrics, _ = evaluate_split(rec.model, rec.data, windows, recipe, device)
        scores[split + ("-seen-excluded" if seen else "")] = metrics
print(json.dumps(scores, indent=1))
PYTHON
    scoring+=($!)
done
# Named pids: a bare `wait` would also wait for the tee that logs this script, forever.
[ "${#scoring[@]}" -gt 0 ] && wait "${scoring[@]}"
tar czf "$OUT/paper-runs.tgz" -C "$PAPER" --exclude='*.pt' . # ranks.npz too: per-user tests need it
ls -l "$OUT"
echo "=== done in $((SECONDS - START)) s: $failed failed step(s)"
exit "$failed"

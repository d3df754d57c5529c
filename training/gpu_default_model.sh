#!/usr/bin/env bash
# Train the default model on one GPU machine, in a time budget, and keep what comes back.
#
#   training/gpu_default_model.sh OUT_DIR [BUDGET_S]
#
# Issue 17's recipe by default: 30 full-size phantoms with the rich anatomy and their
# tissue maps (seeds 100-129) plus the TotalSegmentator abdomen CT, trained with domain
# randomisation (training/configs/generalise_gpu.toml); CONFIG=training/configs/default_model.toml
# ANATOMY=classic gives the shipped 1.x model's recipe (`make default-model`). The chest CT
# is never imported: it is the held-out real scan of tests/benchmarks/bench_real.py, which
# runs at the end on the exported bundle. With the cores of a GPU machine: phantoms
# generated and resampled in parallel, 14 loader workers, CUDA.
# run.time_limit_s stops training early if the budget would be exceeded (best.pt stays
# valid). OUT_DIR receives best.pt, the training log, the held-out report and the engine
# latency table. Export and appliance validation run afterwards on any machine:
#   make default-model-export RUN=OUT_DIR
# Environment: PY (python, default python3), TOTALSEG_SRC (folder of the real CT),
# CONFIG (training config), ANATOMY (classic|rich), INIT_FROM (bundle or checkpoint to
# fine-tune from, e.g. appliance/models/default), REAL=0 (skip the real-scan benchmark),
# REAL_ARGS (its arguments; default --phantom-unseen 4),
# WORKERS (default: cores - 2), DATA (dataset folder, default /tmp/wbspine-default-ds),
# N / SIZE / EXTRA / BENCH_ARGS (phantom count, size, extra --set overrides and engine
# table arguments; for dry runs), DEVICE (default cuda).
set -uo pipefail
OUT=${1:?usage: gpu_default_model.sh OUT_DIR [BUDGET_S]}
BUDGET=${2:-480}
PY=${PY:-python3}
T0=$(date +%s)
CORES=$(nproc)
WORKERS=${WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}
DATA=${DATA:-/tmp/wbspine-default-ds}
N=${N:-30}
SIZE=${SIZE:-full}
CONFIG=${CONFIG:-training/configs/generalise_gpu.toml}
ANATOMY=${ANATOMY:-rich}
RUN=$OUT/run
mkdir -p "$OUT" "$RUN"
elapsed() { echo $(( $(date +%s) - T0 )); }
say() { echo "[$(elapsed) s] $*"; }

say "machine: $CORES cores, $(nvidia-smi -L 2>/dev/null | head -1)"
if [ ! -f "$DATA/dataset.json" ]; then
  say "generating $N $SIZE phantoms with $WORKERS processes"
  $PY -m appliance.cli dataset from-phantoms --out "$DATA" --n "$N" --seed 100 --size "$SIZE" \
    --val 0.1 --test 0.1 --workers "$WORKERS" --anatomy "$ANATOMY" || exit 3
  $PY -m appliance.cli dataset import-totalseg --out "$DATA" --split train \
    ${TOTALSEG_SRC:+--src "$TOTALSEG_SRC"} || exit 3
fi
# What is left for training: the budget, less what went by, less ~90 s for preparing the
# cases (not counted by run.time_limit_s), the held-out evaluation and the engine table.
# The real-scan benchmark (export + 8 real-CT and 8 phantom segmentations) needs ~240 s more.
LIMIT=$(( BUDGET - $(elapsed) - 90 - ( ${REAL:-1} != 0 ? 240 : 0 ) ))
say "training, time limit ${LIMIT} s"
# shellcheck disable=SC2086
$PY -m appliance.cli train --config "$CONFIG" ${INIT_FROM:+--init-from "$INIT_FROM"} \
  --set "data.dataset=$DATA" --set "run.out=$RUN" --set run.device=${DEVICE:-cuda} \
  --set run.num_workers=$WORKERS --set run.time_limit_s=$LIMIT --set run.torch_threads=4 ${EXTRA:-}
rc=$?
say "training exit $rc"
[ -f "$RUN/best.pt" ] || { say "no best.pt"; exit 4; }  # written at the first validation
$PY -m appliance.cli evaluate "$RUN/best.pt" --dataset "$DATA" --split test --out "$OUT/heldout" \
  || say "held-out evaluation failed"
# shellcheck disable=SC2086
$PY tests/benchmarks/bench_engines.py --checkpoint "$RUN/best.pt" ${BENCH_ARGS:-} > "$OUT/engines.json" \
  || say "engine table failed"
if [ "${REAL:-1}" != 0 ]; then  # the held-out real scans, on the exported bundle
  $PY -m appliance.cli export "$RUN/best.pt" --out "$OUT/bundle" --allow-weak > "$OUT/export.log" 2>&1 \
    && $PY tests/benchmarks/bench_real.py --bundle "$OUT/bundle" ${REAL_ARGS:---phantom-unseen 4} --json "$OUT/real.json" \
      > "$OUT/real.txt" 2>&1 || say "real-scan benchmark failed (see $OUT/export.log, $OUT/real.txt)"
fi
say "done"
exit $rc

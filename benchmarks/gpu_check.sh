#!/usr/bin/env bash
# GPU end-to-end check for a machine with one CUDA GPU (about 100-110 s on an H200: benchmarks/results/gpu.md).
# Run from the repository root:
#
#   ADAKIT_DATA=/path/to/data bash benchmarks/gpu_check.sh [OUT_DIR]
#
# OUT_DIR (default gpu-check-<UTC time>) must be new or empty: a non-empty one is refused (exit status 2) before
# step 1, as step 3's run in it would be resumed and report the earlier run's timings; nothing in it is removed.
# Needs: the venv's python (or PYTHON=...), $ADAKIT_DATA/office31/images (Office-31 image folders), a CUDA GPU.
# Steps (each prints "== step N: ..." first, then "PASS step N" or "FAIL step N: why"). Step 1 failing (no GPU)
# stops the script at once; a failure in steps 2-4 is reported and the remaining steps still run, so one pass shows
# every problem. The script ends with "ALL PASSED" and exit status 0, or "FAILED steps: ..." and exit status 1.
#   1. the GPU is visible to torch
#   2. the unit tests that have a CUDA variant (pytest -m cuda over the test files that define one), among them
#      every query strategy on CUDA tensors against its CPU selection (tests/test_select.py,
#      tests/query/test_device.py) and a loop round whose pool outputs stay on the GPU against the CPU-output
#      selection (tests/test_pool_device.py): they must have run and passed, none skipped
#   3. one round of ResNet-50 DANN + LAS (k=5) on Office-31 amazon -> webcam at 224x224, bf16 autocast,
#      channels_last, 8 pinned-memory loader workers: a TIMING line with images/s for training and pool inference
#   4. the query-speed table at N = 1M, b = 2,000 (benchmarks/query_speed.py --device cuda: pool arrays and
#      strategies on the GPU; QUERY_TIMEOUT s per strategy, 45 by default). The committed
#      benchmarks/results/query_speed.* are restored afterwards; this machine's table is saved as
#      OUT/query-speed-1M.md. QUERY_STRATEGIES="las clue" narrows it.
# The last lines summarise the TIMING values. README "Scale: multi-process and GPU" explains how to read them.
set -uo pipefail

PY=${PYTHON:-.venv/bin/python}
OUT=${1:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}
FAILED=()

step() { echo; echo "== step $1: $2"; }
fail() { echo "FAIL step $1: $2" >&2; FAILED+=("$1"); }

command -v "$PY" >/dev/null || { echo "FAIL: python not found at $PY (set PYTHON=...)" >&2; exit 2; }
[ -n "${ADAKIT_DATA:-}" ] && [ -d "$ADAKIT_DATA/office31/images" ] || {
  echo "FAIL: set ADAKIT_DATA to the folder holding office31/images" >&2; exit 2; }
if [ -e "$OUT" ] && { [ ! -d "$OUT" ] || [ -n "$(ls -A "$OUT")" ]; }; then
  echo "FAIL: $OUT is not an empty folder (an earlier check's outputs?); give a new OUT_DIR, or remove it" >&2
  exit 2
fi
mkdir -p "$OUT"
START=$(date +%s)

step 1 "CUDA device"
"$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("no CUDA device visible to torch " + torch.__version__)
p = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {p.name}, {p.total_memory / 2**30:.0f} GiB, "
      f"bf16 {torch.cuda.is_bf16_supported()}")
EOF
[ $? -eq 0 ] || { echo "FAIL step 1: no usable CUDA device (nothing else can run)" >&2; exit 1; }
echo "PASS step 1"

step 2 "unit tests with a CUDA variant (pytest -m cuda)"
# only the files that define CUDA tests are collected: the others may import optional extras this machine lacks
mapfile -t CUDA_FILES < <(grep -rlE "pytest\.mark\.cuda" tests --include="test_*.py" | sort)
OMP_NUM_THREADS=4 "$PY" -m pytest -q -rA -p no:cacheprovider -m cuda "${CUDA_FILES[@]}" 2>&1 \
  | tee "$OUT/pytest-cuda.txt"
if ! grep -Eq "[0-9]+ passed" "$OUT/pytest-cuda.txt"; then fail 2 "no CUDA test ran"
elif grep -Eq "[0-9]+ (failed|error)" "$OUT/pytest-cuda.txt"; then fail 2 "CUDA tests failed (see above)"
elif grep -Eq "[0-9]+ skipped" "$OUT/pytest-cuda.txt"; then fail 2 "CUDA tests were skipped"
else
  missing=0
  for t in "tests/test_select.py::test_cuda_inputs_give_the_cpu_selection" \
           "tests/query/test_device.py::test_cuda_pool_gives_the_cpu_selection" \
           "tests/test_pool_device.py::test_cuda_loop_round_with_outputs_on_the_gpu_selects_as_the_cpu_output_path"; do
    grep -q "^PASSED $t" "$OUT/pytest-cuda.txt" || { fail 2 "$t did not run"; missing=1; }
  done
  if [ $missing -eq 0 ]; then
    echo "strategies on CUDA: $(grep -c "^PASSED tests/.*cuda" "$OUT/pytest-cuda.txt") CUDA strategy/device tests passed"
    echo "PASS step 2"
  fi
fi

step 3 "one round of ResNet-50 DANN + LAS on Office-31 images at 224"
OMP_NUM_THREADS=4 timeout 300 "$PY" benchmarks/gpu_round.py --config configs/office31-images.yaml \
  --out "$OUT/resnet50-dann-las" --device cuda \
  --set model.backbone=resnet50 --set objective.name=dann --set query.strategy=las --set query.k=5 \
  --set data.image_size=224 --set data.verify_images=false --set train.warmup_iters=150 \
  --set train.round_iters=100 --set train.batch_size=32 --set train.eval_batch_size=256 \
  --set train.num_workers=8 --set train.amp=true --set train.channels_last=true 2>&1 | tee "$OUT/round.txt"
if [ $? -ne 0 ]; then fail 3 "the round failed or ran past 300 s (see above)"
elif ! grep -q "^TIMING " "$OUT/round.txt"; then fail 3 "no TIMING line"
else echo "PASS step 3"; fi

step 4 "query-speed table at N = 1M (b = 2,000)"
# query_speed.py records into benchmarks/results/query_speed.{json,md} (GPU cells under their own keys and in
# their own section, beside the CPU cells): keep the committed files as they are, save this machine's table into
# $OUT instead
RES=benchmarks/results
cp "$RES/query_speed.json" "$OUT/query_speed.committed.json" 2>/dev/null || true
cp "$RES/query_speed.md" "$OUT/query_speed.committed.md" 2>/dev/null || true
restore_results() {
  cp "$RES/query_speed.json" "$OUT/query-speed-1M.json" 2>/dev/null || true
  cp "$RES/query_speed.md" "$OUT/query-speed-1M.md" 2>/dev/null || true
  cp "$OUT/query_speed.committed.json" "$RES/query_speed.json" 2>/dev/null || true
  cp "$OUT/query_speed.committed.md" "$RES/query_speed.md" 2>/dev/null || true
}
trap restore_results EXIT
QS=(--sizes 1000000 --budget 2000 --threads 16 --no-reference --timeout "${QUERY_TIMEOUT:-45}" --max-reps 1
    --device cuda --strategies ${QUERY_STRATEGIES:-margin las coreset badge clue sage})
OMP_NUM_THREADS=16 timeout 330 "$PY" benchmarks/query_speed.py "${QS[@]}" 2>&1 | tee "$OUT/query-speed.txt"
status=$?
restore_results
trap - EXIT
if [ $status -ne 0 ]; then fail 4 "query_speed.py failed or ran past 330 s (see above)"
else echo "table: $OUT/query-speed-1M.md"; echo "PASS step 4"; fi

echo
echo "== summary ($(( $(date +%s) - START )) s, outputs in $OUT)"
grep "^TIMING " "$OUT/round.txt" 2>/dev/null
if [ ${#FAILED[@]} -gt 0 ]; then echo "FAILED steps: ${FAILED[*]}" >&2; exit 1; fi
echo "ALL PASSED"

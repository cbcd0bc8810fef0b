#!/usr/bin/env bash
# One prepared check of everything CUDA, for a machine with an NVIDIA GPU and
# PyTorch 2.11 but no cargo: build on a CPU machine (scripts/gpu-check.sh --build),
# carry target/release/expcluster and target/release/examples/{gpu_check,bench_vs_pytorch,allreduce_bench},
# run this from the repository root. Prints a table; exits non-zero if a check fails.
#
#   1. the trainer on CUDA: every model kind in fp32, bf16 and bf16_pure, cancel and
#      resume; then
#      data-parallel through NCCL (each all-reduce followed by the collective
#      watchdog's CUDA event: a false abort fails the run): a one-rank NCCL gang trains (and must match the
#      plain run) and NCCL all-reduce bandwidth for a few sizes;
#   2. expcluster end to end: a coordinator, a worker with --gpus 0, a stage of
#      trainer jobs; checks the jobs ran on cuda:0;
#   3. steps/s of the trainer next to the same MLP in PyTorch eager, on the GPU (the
#      issue-24 table: fp32 rows and the bf16 AMP-style row in TFLOP/s), then the
#      aggregate steps/s of 1, 4 and 8 small trainer jobs sharing the GPU;
#   4. the CPU TCP ring all-reduce between 2 and 4 ranks (threads, loopback).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--build" ]; then
    cargo build --release -p expcluster-cli
    cargo build --release -p expcluster-trainer --example gpu_check --example bench_vs_pytorch --example allreduce_bench
    exit $?
fi

DEFAULT_PY="$(command -v python3)"
[ -x /opt/torch/.venv/bin/python ] && DEFAULT_PY=/opt/torch/.venv/bin/python
PY="${EXPCLUSTER_PYTHON:-$DEFAULT_PY}"
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
# cudarc opens libnccl.so; the wheel ships only libnccl.so.2. Link the very file
# libtorch_cuda loads (another NCCL makes ncclCommInitRank fail).
NCCL_LIB="$("$PY" -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)"
NCCL_LINK="$(mktemp -d)"
[ -n "$NCCL_LIB" ] && ln -sf "$NCCL_LIB/libnccl.so.2" "$NCCL_LINK/libnccl.so"
export LD_LIBRARY_PATH="$NCCL_LINK:$TORCH_LIB:${LD_LIBRARY_PATH:-}"
export EXPCLUSTER_PYTHON="$PY"
BIN="${EXPCLUSTER_BIN:-target/release/expcluster}"
EXAMPLES="${EXPCLUSTER_EXAMPLES:-target/release/examples}"
RESULTS=()
record() { RESULTS+=("| $1 | $2 | $3 |"); }

echo "== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== 1. trainer on CUDA (all model kinds, fp32/bf16/bf16_pure, cancel/resume, 1-rank NCCL gang, NCCL bandwidth)"
if "$EXAMPLES/gpu_check" 0; then record "trainer on cuda:0" PASS "gpu_check"; else record "trainer on cuda:0" FAIL "gpu_check exited non-zero"; fi

echo "== 2. expcluster end to end on the GPU"
WORK="$(mktemp -d)"
WS="$WORK/gpu-e2e"
mkdir -p "$WS"
cat > "$WS/config.yaml" <<'YAML'
name: gpu-e2e
primary_metric: {name: test_accuracy, goal: max}
job:
  trainer:
    dataset: {kind: blobs, n_train: 20000, n_test: 2000, n_features: 64, n_classes: 8, noise: 1.0}
    model: {kind: mlp, hidden: [512, 512]}
    optimizer: {kind: adam, lr: 1.0e-3}
    epochs: 3
    batch_size: 256
methods:
  proposed: {}
  wide: {trainer.model.hidden: [1024, 1024]}
stages:
  baselines: {seeds: 2}
YAML
"$BIN" coordinator --workspace "$WS" --listen 127.0.0.1:0 > "$WORK/coordinator.out" 2> "$WORK/coordinator.err" &
COORD=$!
for _ in $(seq 100); do grep -q listening "$WORK/coordinator.out" && break; sleep 0.1; done
ADDR="$(grep -o '127.0.0.1:[0-9]*' "$WORK/coordinator.out" | head -n 1)"
EXPCLUSTER_LOG=info "$BIN" worker --coordinator "$ADDR" --gpus 0 --work-dir "$WORK/worker" \
    --token-file "$WS/.expcluster/worker.token" 2> "$WORK/worker.err" &
WORKER=$!
START=$(date +%s.%N)
EXPCLUSTER_TOKEN_FILE="$WS/.expcluster/client.token" "$BIN" submit --stage baselines --coordinator "$ADDR"
SUBMIT=$?
END=$(date +%s.%N)
kill "$WORKER" "$COORD" 2>/dev/null; wait "$WORKER" "$COORD" 2>/dev/null
DONE=$(grep -c '"type":"job_completed".*"status":"succeeded"' "$WS/research_log.jsonl" || true)
ON_GPU=$(grep -c 'device=cuda:0' "$WORK/worker.err" || true)
if [ "$SUBMIT" -eq 0 ] && [ "$DONE" -eq 4 ] && [ "$ON_GPU" -ge 4 ]; then
    record "expcluster stage on cuda:0" PASS "4/4 jobs, $ON_GPU on cuda:0, $(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.1f", b - a }') s"
else
    record "expcluster stage on cuda:0" FAIL "submit=$SUBMIT done=$DONE on_gpu=$ON_GPU (see $WORK)"
    tail -n 20 "$WORK/worker.err"
fi

echo "== 3. trainer vs PyTorch eager on the GPU (fp32 and bf16 AMP-style), then packing"
if BENCH_DEVICE=cuda "$EXAMPLES/bench_vs_pytorch" --threads 1; then record "steps/s vs PyTorch" PASS "table above"; else record "steps/s vs PyTorch" FAIL "bench exited non-zero"; fi
# Small jobs sharing one GPU, as `expcluster worker --slots-per-gpu N` runs them.
if BENCH_DEVICE=cuda "$EXAMPLES/bench_vs_pytorch" --packing 1,4,8; then record "packing 1/4/8 jobs" PASS "table above"; else record "packing 1/4/8 jobs" FAIL "bench exited non-zero"; fi

echo "== 4. CPU TCP ring all-reduce (2 and 4 ranks)"
if "$EXAMPLES/allreduce_bench" 2 4; then record "tcp ring all-reduce" PASS "table above"; else record "tcp ring all-reduce" FAIL "allreduce_bench exited non-zero"; fi

echo
echo "| check | result | detail |"
echo "|---|---|---|"
printf '%s\n' "${RESULTS[@]}"
! printf '%s\n' "${RESULTS[@]}" | grep -q FAIL

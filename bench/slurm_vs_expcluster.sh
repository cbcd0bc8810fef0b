#!/usr/bin/env bash
# Side by side (a benchmark, not a test): the same tiny jobs run as a Slurm job array
# and through expcluster on Slurm-launched workers, on the local Slurm of
# deploy/slurm/local-cluster.sh. Prints wall time and jobs/s of each.
#
#   bench/slurm_vs_expcluster.sh [jobs (200)] [concurrency (8)]
#
# Each job is `python runfile.py`: print a metric, exit. Both sides run at most
# <concurrency> jobs at once (Slurm: --array=...%N; expcluster: one worker with N slots,
# itself started by sbatch). expcluster's time starts before `sbatch` of the worker,
# so it includes the worker's start and registration.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${1:-200}"
CONCURRENCY="${2:-8}"
. scripts/env.sh
BIN="$PWD/target/release/expcluster"
[ -x "$BIN" ] || { echo "build first: cargo build --release -p expcluster-cli" >&2; exit 1; }
deploy/slurm/local-cluster.sh up

WORK="$(mktemp -d /tmp/expcluster-bench.XXXXXX)"
coordinator_pid=
cleanup() {
    [ -n "$coordinator_pid" ] && kill "$coordinator_pid" 2>/dev/null
    [ -n "${worker_job:-}" ] && scancel "$worker_job" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
WS="$WORK/bench"
mkdir -p "$WS" "$WORK/array-out"
cat >"$WS/runfile.py" <<'PY'
import os
seed = int(os.environ.get("EXP_SEED", os.environ.get("SLURM_ARRAY_TASK_ID", "0")))
print(f"score: {seed / 1000}")
PY
cat >"$WS/config.yaml" <<YAML
name: bench
primary_metric: {name: score, goal: max}
metrics: [score]
job: {command: [python, runfile.py]}
methods: {proposed: {}}
stages: {implementation: {seeds: $JOBS}}
resources: {max_attempts: 1, timeout: 5m}
YAML

now() { date +%s.%N; }

# 1. A Slurm job array: one Slurm job per task.
start=$(now)
sbatch --wait --quiet --job-name=bench-array --array="0-$((JOBS - 1))%$CONCURRENCY" \
    --output="$WORK/array-out/%a.out" --chdir="$WS" --wrap "python runfile.py" >/dev/null
end=$(now)
array_s=$(echo "$end - $start" | bc -l)
done_array=$(grep -l '^score:' "$WORK"/array-out/*.out | wc -l)

# 2. expcluster: a coordinator here, one worker with N slots started by sbatch.
"$BIN" coordinator --workspace "$WS" --listen "$(deploy/slurm/local-cluster.sh address):0" >"$WORK/coordinator.out" 2>"$WORK/coordinator.err" &
coordinator_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/coordinator.out" && break; sleep 0.1; done
address=$(awk '/listening on/ {print $5; exit}' "$WORK/coordinator.out")
start=$(now)
worker_job=$(EXPCLUSTER_COORDINATOR="$address" EXPCLUSTER_WORKSPACE="$WS" EXPCLUSTER_BIN="$BIN" \
    EXPCLUSTER_SLOTS="$CONCURRENCY" sbatch --parsable --job-name=bench-worker \
    --output="$WORK/worker.out" deploy/slurm/expcluster-workers.sbatch)
"$BIN" submit --stage implementation --workspace "$WS" --coordinator "$address" \
    --token-file "$WS/.expcluster/client.token" >"$WORK/submit.out" 2>&1
end=$(now)
expcluster_s=$(echo "$end - $start" | bc -l)
done_expcluster=$(grep -c '"type":"job_completed".*"succeeded"' "$WS/research_log.jsonl" || true)

printf '\n%d tiny jobs, at most %d at once, on %s (%s CPU cores)\n' "$JOBS" "$CONCURRENCY" "$(hostname)" "$(nproc)"
printf '%-36s %10s %10s %8s\n' "" "wall s" "jobs/s" "done"
printf '%-36s %10.2f %10.1f %8d\n' "Slurm job array" "$array_s" "$(echo "$JOBS / $array_s" | bc -l)" "$done_array"
printf '%-36s %10.2f %10.1f %8d\n' "expcluster on an sbatch'd worker" "$expcluster_s" "$(echo "$JOBS / $expcluster_s" | bc -l)" "$done_expcluster"

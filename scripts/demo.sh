#!/usr/bin/env bash
# The main job: a full four-stage experiment (implementation, baselines, full,
# ablations) of the built-in tch trainer on scikit-learn's digits, with an embedded
# coordinator and local workers. Running it again reruns only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh

EXAMPLE="${1:-digits-mlp}"
WORKSPACE="experiments/$EXAMPLE"
cargo build --release -p expcluster-cli
if [ ! -d "$WORKSPACE" ]; then
    mkdir -p experiments
    cp -r "examples/$EXAMPLE" "$WORKSPACE"
    mkdir -p "$WORKSPACE/data" "$WORKSPACE/experiment_results" "$WORKSPACE/figures" "$WORKSPACE/logs"
    cp "$EXPCLUSTER_DATA/digits.npz" "$WORKSPACE/data/digits.npz"
fi
target/release/expcluster validate --workspace "$WORKSPACE"
time target/release/expcluster submit --workspace "$WORKSPACE" --stage all
echo "the record is in $WORKSPACE: research_log.jsonl, *_summary.json, experiment_results/, logs/"

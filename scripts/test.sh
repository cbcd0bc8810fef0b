#!/usr/bin/env bash
# Every test: formatting, lints, and the whole test suite (unit tests, real
# libtorch training, scipy cross-checks, real coordinators and workers on loopback),
# then the trainer's CPU benchmark against PyTorch (a table, never a pass/fail on
# speed; EXPCLUSTER_SKIP_BENCH=1 skips it, saying so).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
# The Slurm tests run against a real two-node Slurm, its nodes network namespaces
# (needs root; see deploy/slurm/README.md).
deploy/slurm/local-cluster.sh up

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
# The integration tests start the real `expcluster` binary; `cargo test` builds a
# package's plain binaries only for that package's own integration tests, so build
# them first.
cargo build --workspace --release --bins
cargo test --workspace --release -- "$@"
# After the tests, so it does not share the cores with them.
scripts/bench-cpu.sh

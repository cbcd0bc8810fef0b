#!/usr/bin/env bash
# Fuzzes the parsers that read outside input, each for a bounded time:
#   config_parse  - ExperimentConfig::parse (config.yaml)
#   metric_line   - parse_metric_line (every stdout line of a job)
#   npy_validate  - validate_npy (every uploaded .npy)
# Usage: scripts/fuzz.sh [seconds per target, default 60] [target...]
# Needs the nightly toolchain and cargo-fuzz (installed here from crates.io if missing).
# A crash leaves its input under fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(config_parse metric_line npy_validate)
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo +nightly install --locked cargo-fuzz
fi
# Seed corpora from the repository's own examples, so the fuzzer starts from valid input.
mkdir -p fuzz/corpus/config_parse fuzz/corpus/metric_line fuzz/corpus/npy_validate
find examples experiments -name config.yaml 2>/dev/null | while read -r file; do
  cp "$file" "fuzz/corpus/config_parse/$(echo "$file" | tr '/' '_')"
done
printf 'train_loss: 0.5' > fuzz/corpus/metric_line/plain
printf 'test_accuracy: nan' > fuzz/corpus/metric_line/nan
printf '\x93NUMPY\x01\x00v\x00{"descr": "<f8", "fortran_order": False, "shape": (1,), }' > fuzz/corpus/npy_validate/header-only
status=0
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  if ! cargo +nightly fuzz run --release "$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10; then
    echo "fuzz.sh: $target found a failure: see fuzz/artifacts/$target/" >&2
    status=1
  fi
done
exit $status

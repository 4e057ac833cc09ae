#!/usr/bin/env bash
# The long reliability runs (issue 8), outside the README's test command: each prints a table.
#   scripts/soak.sh                 # 100 camera kill/restore cycles under 3 viewers
#   SOAK_CYCLES=10 scripts/soak.sh  # a shorter run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo test --release --test soak -- --ignored --nocapture --test-threads=1 2>&1 \
  | grep -E '^\|' || { echo "soak: a run failed; rerun without the filter to see why" >&2; exit 1; }

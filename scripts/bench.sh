#!/usr/bin/env bash
# Runs every benchmark and prints its tables. BENCH_ONLY=latency|cpu|ingest|added|scale|snapshot|cry|aac|events|webrtc|mse runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo bench --bench media

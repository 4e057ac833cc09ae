#!/usr/bin/env bash
# Runs the benchmarks and prints their tables. BENCH_ONLY=latency|cpu|snapshot|cry|events|webrtc runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo bench --bench media

#!/usr/bin/env bash
# The long reliability runs (issue 8), outside the README's test command: each prints a table.
#   scripts/soak.sh              # 100 camera kill/restore cycles under 3 viewers, then
#                                # 10,000 RTSP viewers and 1,000 WebRTC sessions churned
#   SOAK_CYCLES=10 CHURN_RTSP=500 CHURN_WEBRTC=50 scripts/soak.sh   # a shorter run
#   scripts/soak.sh churn        # only the tests whose name contains "churn"
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo test --release --test soak -- --ignored --nocapture --test-threads=1 "$@" 2>&1 \
  | grep -E '^\|' || { echo "soak: a run failed; rerun without the filter to see why" >&2; exit 1; }

#!/usr/bin/env bash
# README command 2: install what is missing, then run every test (unit and end-to-end against
# real Mosquitto, RTSP clients, gst-rtsp-server and VLC camera stand-ins).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
# The build without cry detection (no ONNX Runtime) must stay clean too, and the add-on's own
# (no demo, so no embedded broker).
cargo clippy --lib --no-default-features --quiet -- -D warnings
cargo clippy --bin ipcam-mqtt --no-default-features --features cry,webrtc --quiet -- -D warnings
cargo test --all-targets
# Every parser of untrusted input, fuzzed for 10 s each (unoptimized, with overflow checks).
FUZZ_SECONDS=10 scripts/fuzz.sh

#!/usr/bin/env bash
# Recall and false alarms of the shipped cry detector per nursery condition (clean, G.711, a
# noise machine then G.711) on the development set's validation split, and alarms per hour over
# a long negative night; runs `ipcam-mqtt classify` as a user would (scripts/cry-eval.py says how).
# Usage: scripts/cry-eval.sh [--sensitivity N] [--minutes M]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e ../shared/fixtures/audio-dev/manifest.csv ] || {
  echo "cry-eval: ../shared/fixtures/audio-dev is missing (shared/ belongs beside the checkout)" >&2; exit 1; }
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(python3 -c 'import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[0])')
  export ORT_DYLIB_PATH
fi
cargo build --release -q --bin ipcam-mqtt
exec python3 scripts/cry-eval.py "$@"

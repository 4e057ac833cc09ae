#!/usr/bin/env bash
# Runs `ipcam-mqtt classify` over the development clips in ../shared/fixtures/audio and prints,
# per threshold, which clips the detector calls a cry: recall on cry/ and false alarms on other/.
# Usage: scripts/cry-eval.sh [threshold ...]   (default: 0.3 0.5 0.7)
# Twenty hand-picked clips are a sanity check of the rule, not an accuracy benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="../shared"
model="$shared/models/yamnet.onnx"
clips="$shared/fixtures/audio"
for needed in "$model" "$clips"; do
  [ -e "$needed" ] || { echo "cry-eval: $needed is missing (shared/ belongs beside the checkout)" >&2; exit 1; }
done
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(python3 -c 'import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so*")))[0])')
  export ORT_DYLIB_PATH
fi
cargo build -q
thresholds=("$@")
[ ${#thresholds[@]} -gt 0 ] || thresholds=(0.3 0.5 0.7)
for threshold in "${thresholds[@]}"; do
  echo "## threshold $threshold (2 of 3 patches, min duration 0 s)"
  echo
  echo "| clip | label | verdict | cries |"
  echo "|---|---|---|---|"
  hits=0; alarms=0; cries=0; others=0
  for clip in "$clips"/cry/*.wav "$clips"/other/*.wav; do
    label=$(basename "$(dirname "$clip")")
    summary=$(target/debug/ipcam-mqtt classify --model "$model" --threshold "$threshold" "$clip" | tail -1)
    if [[ "$summary" == *" 0 cries"* ]]; then verdict="quiet"; else verdict="CRY"; fi
    if [ "$label" = cry ]; then
      cries=$((cries + 1)); [ "$verdict" = CRY ] && hits=$((hits + 1))
    else
      others=$((others + 1)); [ "$verdict" = CRY ] && alarms=$((alarms + 1))
    fi
    echo "| $(basename "$clip") | $label | $verdict | ${summary#*; } |"
  done
  echo
  echo "recall $hits/$cries, false alarms $alarms/$others"
  echo
done

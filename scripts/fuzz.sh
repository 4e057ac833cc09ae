#!/usr/bin/env bash
# Fuzzes each parser of untrusted input for a bounded time with cargo fuzz (libFuzzer,
# AddressSanitizer, nightly Rust) and prints a table. Not part of CI.
#   scripts/fuzz.sh                    # every target, 300 s each
#   FUZZ_SECONDS=30 scripts/fuzz.sh config http_query
# Targets (fuzz/fuzz_targets): mqtt_command (topic + payload from the broker), config (YAML and
# options.json), http_query (/api/frame.jpeg's query), webrtc_offer (a viewer's SDP offer).
# A crash is kept in fuzz/artifacts/<target>/; `cargo +nightly fuzz run <target> <file>`
# replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
seconds=${FUZZ_SECONDS:-300}
# Leaks are checked at exit too. For the target that loads GStreamer: GLib's slice allocator
# keeps chunks for the process's life, and its library constructor allocates once before main
# (fuzz/lsan.supp); only the full unwinder, ten times slower, lets that suppression see the
# constructor's frame.
glib_env=(G_SLICE=always-malloc G_DEBUG=gc-friendly ASAN_OPTIONS=fast_unwind_on_malloc=0
  LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mqtt_command config http_query webrtc_offer)
failed=0
echo "| target | seconds | runs | runs/s | coverage (edges) | corpus | crashes |"
echo "|---|---|---|---|---|---|---|"
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  log=target/fuzz-$target.log
  mkdir -p target
  echo "fuzzing $target for ${seconds}s (log: $log)" >&2
  env=()
  [ "$target" != webrtc_offer ] || env=("${glib_env[@]}")
  if env "${env[@]}" cargo +nightly fuzz run "$target" "$corpus" "fuzz/seeds/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    crashes=0
  else
    crashes=1
    failed=1
  fi
  runs=$(grep -oP '^stat::number_of_executed_units:\s*\K\d+' "$log" | tail -1 || echo "?")
  speed=$(grep -oP '^stat::average_exec_per_sec:\s*\K\d+' "$log" | tail -1 || echo "?")
  cov=$(grep -oP 'cov: \K\d+' "$log" | tail -1 || echo "?")
  files=$(find "$corpus" -type f | wc -l)
  echo "| $target | $seconds | $runs | $speed | $cov | $files | $crashes |"
  if [ "$crashes" != 0 ]; then
    grep -E 'panicked|ERROR: AddressSanitizer|Test unit written' "$log" | head -5 >&2
  fi
done
exit $failed

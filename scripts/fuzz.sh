#!/usr/bin/env bash
# Fuzzes each parser of untrusted input for a bounded time with cargo fuzz (libFuzzer) and
# prints a table; exits non-zero on any crash. scripts/test.sh (and so CI) runs every target
# for 10 s; run longer by hand:
#   scripts/fuzz.sh                                  # every target, 300 s each
#   FUZZ_SECONDS=30 scripts/fuzz.sh config timeline  # some targets
#   FUZZ_SANITIZER=address scripts/fuzz.sh           # with AddressSanitizer and leak checks
# Targets (fuzz/fuzz_targets): mqtt_command (topic + payload from the broker), config (YAML and
# options.json), http_query (/api/frame.jpeg's query), webrtc_offer (a viewer's SDP offer),
# timeline (the camera's RTP times and arrivals), sidecar (a clip's .json on the media
# share), credentials (/data/credentials.json), rtsp_request (anything sent to the RTSP port).
# Runs on the machine's stable Rust: without a sanitizer cargo fuzz needs no nightly flag, and
# AddressSanitizer's -Z flag is allowed by RUSTC_BOOTSTRAP. Builds are unoptimized (--dev):
# they take half the time to build, and keep overflow checks on.
# A crash is kept in fuzz/artifacts/<target>/; `scripts/fuzz.sh` prints how to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked --quiet
seconds=${FUZZ_SECONDS:-300}
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
all=(mqtt_command config http_query webrtc_offer timeline sidecar credentials rtsp_request)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
echo "fuzz: building ${#targets[@]} target(s), sanitizer $sanitizer" >&2
(cd fuzz && cargo fuzz build --dev -s "$sanitizer")
failed=0
echo "| target | seconds | runs | runs/s | coverage (edges) | corpus | crashes |"
echo "|---|---|---|---|---|---|---|"
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus" target
  log=target/fuzz-$target.log
  echo "fuzz: $target for ${seconds}s (log: $log)" >&2
  env=()
  # Leak checks (AddressSanitizer only) for the target that loads GStreamer: GLib's slice
  # allocator keeps chunks for the process's life, and its library constructor allocates once
  # before main (fuzz/lsan.supp); only the full unwinder lets the suppression see that frame.
  if [ "$sanitizer" = address ] && [ "$target" = webrtc_offer ]; then
    env=(G_SLICE=always-malloc G_DEBUG=gc-friendly ASAN_OPTIONS=fast_unwind_on_malloc=0
      LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp)
  fi
  if (cd fuzz && env "${env[@]}" cargo fuzz run --dev -s "$sanitizer" "$target" \
      "../$corpus" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -print_final_stats=1) >"$log" 2>&1; then
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
    grep -E 'panicked|ERROR: |Test unit written' "$log" | head -5 >&2
    echo "fuzz: replay with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev -s $sanitizer $target <the file above>)" >&2
  fi
done
exit $failed

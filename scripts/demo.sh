#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the demo (embedded broker + synthetic camera).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --quiet -- demo "$@"

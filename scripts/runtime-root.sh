#!/usr/bin/env bash
# Proves addon/runtime-packages.txt complete without Docker: debootstrap a minimal Debian
# bookworm root, install exactly that list into it, copy in the release binary, ONNX Runtime
# and the YAMNet model as the Dockerfile does, then inside the root run the binary's plugin
# check and its demo, and play the demo's stream with ffprobe from outside.
# Needs root and the Debian mirror; not part of CI.
#   scripts/runtime-root.sh            # ROOT=/tmp/ipcam-runtime-root by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-/tmp/ipcam-runtime-root}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MODEL=${MODEL:-models/yamnet/yamnet-cry.onnx}
ORT=${ORT_DYLIB_PATH:-$(python3 -c 'import onnxruntime, glob, os; print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*"))[0])')}

command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
echo "runtime-root: building the release binary"
cargo build --release --quiet --bin ipcam-mqtt
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
  echo "runtime-root: debootstrap bookworm (minbase) into $ROOT"
  debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >/dev/null
fi
demo=""
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
trap '[ -n "$demo" ] && kill $demo 2>/dev/null; umount "$ROOT/proc" 2>/dev/null || true' EXIT
mapfile -t packages < <(grep -v '^#' addon/runtime-packages.txt | grep .)
echo "runtime-root: installing only addon/runtime-packages.txt: ${packages[*]}"
chroot "$ROOT" apt-get update -qq
DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
install -D target/release/ipcam-mqtt "$ROOT/usr/bin/ipcam-mqtt"
install -D "$ORT" "$ROOT/usr/lib/ipcam-mqtt/libonnxruntime.so"
install -D "$MODEL" "$ROOT/usr/share/ipcam-mqtt/yamnet-cry.onnx"
install -D "$(dirname "$MODEL")/yamnet_class_map.csv" "$ROOT/usr/share/ipcam-mqtt/yamnet_class_map.csv"

in_root() { chroot "$ROOT" env HOME=/root ORT_DYLIB_PATH=/usr/lib/ipcam-mqtt/libonnxruntime.so "$@"; }
echo "runtime-root: the plugin check (check-config on the add-on's default options)"
printf '{"log_level":"info","media_dir":"/tmp/media","cry_model":"/usr/share/ipcam-mqtt/yamnet-cry.onnx","ha_cameras":true,"mqtt":{},"rtsp":{},"http":{},"webrtc":{},"cameras":[]}' > "$ROOT/tmp/options.json"
in_root ipcam-mqtt --config /tmp/options.json check-config
port=$((20000 + RANDOM % 20000))
echo "runtime-root: the demo with cry detection, RTSP on $port"
in_root ipcam-mqtt demo --rtsp-port "$port" --http-port $((port + 1)) --mqtt-port $((port + 2)) \
  --cry-model /usr/share/ipcam-mqtt/yamnet-cry.onnx > /tmp/runtime-root-demo.log 2>&1 &
demo=$!
sleep 8
ffprobe -v error -rtsp_transport tcp -show_entries stream=codec_name -of csv=p=0 \
  "rtsp://127.0.0.1:$port/demo_live" | tee /tmp/runtime-root-ffprobe.txt
grep -q h264 /tmp/runtime-root-ffprobe.txt && grep -q aac /tmp/runtime-root-ffprobe.txt
if grep -qiE "missing GStreamer elements|cry detection is off" /tmp/runtime-root-demo.log; then
  cat /tmp/runtime-root-demo.log; exit 1
fi
echo "runtime-root: OK: the runtime list runs the plugin check, the demo, its stream and cry detection"

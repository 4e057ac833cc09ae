#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test ipcam-mqtt.
# Idempotent: only missing packages are installed. Prints what it does.
set -euo pipefail

APT_PACKAGES=(
  pkg-config
  # GStreamer: build headers, the RTSP server library and the plugins the media path uses.
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-x
  # WebRTC: webrtcbin's library headers (this -dev package pulls in OpenCV's, ~550 MB) and ICE.
  libgstreamer-plugins-bad1.0-dev gstreamer1.0-nice
  # Real peers for the tests: a broker, RTSP and HTTP clients, a third-party RTSP server, and
  # python3 for the still-image server of the snapshot tests.
  mosquitto mosquitto-clients ffmpeg vlc-bin vlc-plugin-base iproute2 curl python3
  # nftables: the MSE test drops UDP in the add-on's network namespace, as a tunnel or a strict
  # network does, so WebRTC cannot connect there.
  nftables
  # openssl makes the CA and broker certificates of the MQTT TLS test.
  openssl
  # Headless Chromium for the viewer page test.
  chromium
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all apt packages present"
fi

# PyAV, the library Home Assistant's stream component plays RTSP with, for a client test.
if ! python3 -c "import av" 2>/dev/null; then
  echo "setup: installing PyAV from PyPI"
  python3 -m pip install -q --root-user-action=ignore av
fi

# The Supervisor's option rules (../shared/supervisor/check-addon-options.py), with its pins.
if ! python3 -c "import voluptuous, yaml" 2>/dev/null; then
  echo "setup: installing voluptuous and PyYAML (the Supervisor's options check) from PyPI"
  python3 -m pip install -q --root-user-action=ignore "voluptuous==0.16.0" "PyYAML==6.0.3"
fi

# ONNX Runtime for cry detection (ort with load-dynamic), from the PyPI wheel.
if ! python3 -c "import onnxruntime" 2>/dev/null; then
  echo "setup: installing onnxruntime 1.31 from PyPI"
  python3 -m pip install -q --root-user-action=ignore "onnxruntime==1.31.*"
fi

# The Prometheus text-format parser of the Prometheus Python client, to read `/metrics` in tests.
if ! python3 -c "import prometheus_client" 2>/dev/null; then
  echo "setup: installing prometheus_client from PyPI"
  python3 -m pip install -q --root-user-action=ignore "prometheus_client==0.21.1"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi

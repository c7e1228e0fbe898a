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
  for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
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

# Inspector insp-1 is played by the helper: every order given to it is accepted, reached
# and resolved a few seconds later. Orders for `lead` wait for you (and escalate if left).
insp1() {
  "$bin" inspector --config deploy/demo.toml --id insp-1 watch 2>/dev/null |
    while read -r _at event order _state _camera _category assignee _deadline; do
      case "$event" in assigned | reassigned) ;; *) continue ;; esac
      [ "$assignee" = "assignee=insp-1" ] || continue
      id=${order#order=}
      for action in accept arrive resolve; do
        sleep 4
        "$bin" inspector --config deploy/demo.toml --id insp-1 "$action" "$id" --note "demo helper" >/dev/null ||
          continue 2
      done
      echo "demo: insp-1 accepted, reached and resolved $id with edge-node inspector"
    done
}
insp1 &
pids+=($!)

cat <<'HINT'
demo: the status page is http://127.0.0.1:9090/ (cameras, alerts with snapshots and clips, orders)
demo: the inspectors' app is http://127.0.0.1:9090/inspector/ (sign in as lead: token demo-token-lead-0000001)
demo: orders go to the demo inspectors; insp-1 is played by the helper, lead is yours:
  ./target/release/edge-node inspector --config deploy/demo.toml --id lead watch
  ./target/release/edge-node inspector --config deploy/demo.toml --id lead accept|arrive|resolve ORDER
  mosquitto_sub -p 18830 -t 'gridsight/#' -v        (everything on the broker)
HINT
# Ctrl-C reaches every process of the group; the node exits 0 on it.
trap ':' INT
"$bin" run --config deploy/demo.toml
status=$?
trap cleanup EXIT
exit $status

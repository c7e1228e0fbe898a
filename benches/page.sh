#!/usr/bin/env bash
# The status page with many cameras, in a real headless Chromium (Selenium from .cache/venv):
# `edge-node run` on N simulated cameras (default 200; four 320x240 pattern streams shared),
# then the page is loaded and measured: time until every camera is on it, thumbnails loaded
# (lazily: those on screen), script time of one update (the page updates every 2 s), the
# size and time of /api/overview, and console errors.
#
# Usage: benches/page.sh [N] [BIN]   (BIN default: target/release/edge-node)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}; bin=${2:-target/release/edge-node}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$PWD/.cache/onnxruntime/libonnxruntime.so.1.31.1}
export GRIDSIGHT_MEDIA=${GRIDSIGHT_MEDIA:-$PWD/.cache/media}
d=$(mktemp -d); simport=18960; http=18962
"$bin" sim --port $simport --stream "s0=pattern:ball:4,size=320x240,keyint=2s" \
  --stream "s1=pattern:smpte:4,size=320x240,keyint=2s" --stream "s2=pattern:snow:4,size=320x240,keyint=2s" \
  --stream "s3=pattern:ball:6,size=320x240,keyint=2s" >"$d/sim.log" 2>&1 & sim=$!
trap 'kill $sim ${node:-} 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$simport) 2>/dev/null && break; sleep 0.1; done
{
  printf 'version = 1\n[node]\nid = "page"\n[embedded_broker]\nlisten = "127.0.0.1:18961"\n[http]\nlisten = "127.0.0.1:%s"\n' $http
  printf '[storage]\ndata_dir = "%s/data"\nmodels_dir = "%s/models"\n' "$d" "$PWD"
  printf '[models.objects]\nfile = "yolox_nano_dynamic.onnx"\n[models.faces]\nfile = "yunet_s_dynamic.onnx"\ninput_size = [640, 384]\n'
  for i in $(seq 0 $((n - 1))); do printf '[[cameras]]\nid = "cam-%03d"\nurl = "rtsp://127.0.0.1:%s/s%d"\n' $i $simport $((i % 4)); done
} >"$d/node.toml"
"$bin" run --config "$d/node.toml" >"$d/node.log" 2>&1 & node=$!
echo "page bench: $n cameras; waiting for every camera to have a picture"
for _ in $(seq 1 120); do
  got=$(curl -s http://127.0.0.1:$http/api/overview | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for c in d["cameras"] if c["snapshot_at"]))' 2>/dev/null || echo 0)
  [ "$got" -ge "$n" ] && break; sleep 1
done
curl -s -o /dev/null -w "overview: %{size_download} bytes in %{time_total} s\n" http://127.0.0.1:$http/api/overview
.cache/venv/bin/python - "$n" "http://127.0.0.1:$http/" <<'PY'
import sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
n, url = int(sys.argv[1]), sys.argv[2]
o = webdriver.ChromeOptions(); o.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
    o.add_argument(a)
o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
d = webdriver.Chrome(options=o, service=Service(executable_path="/usr/bin/chromedriver"))
try:
    t0 = time.time(); d.get(url)
    while d.execute_script("return document.querySelectorAll('#cameras .camera').length") < n:
        time.sleep(0.05)
    print("every camera on the page after %.2f s" % (time.time() - t0))
    time.sleep(5)
    thumbs = "return [...document.querySelectorAll('#cameras img.thumb')].filter(i => i.complete && i.naturalWidth > 0).length"
    print("thumbnails loaded, on screen:", d.execute_script(thumbs))
    ms = d.execute_script("const t = performance.now(); for (let i = 0; i < 10; i++) render(JSON.parse(JSON.stringify(data)));"
                          " return (performance.now() - t) / 10;")
    print("one page update: %.1f ms of script (every 2 s)" % ms)
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    print("console errors:", len(errors), errors[:3])
finally:
    d.quit()
PY

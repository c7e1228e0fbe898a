"""The video wall (/wall) in a real headless Chromium, as one credential sees it.

    wall.py URL --live N --pictures N [--reason TEXT] [--flash] [--seconds S] --screenshot FILE

URL carries the credential (http://name:token@127.0.0.1:port/wall?...). Checks: N tiles play
raw live video (their currentTime advances), N tiles show the pixelated picture and say why
(containing TEXT), with --flash a tile flashes for its camera's new alert; with --seconds the
wall keeps playing that long and its memory does not grow (the JS heap after a garbage
collection, and each video's buffer stays under 25 s); no console error."""

import argparse
import sys
import time

from selenium.webdriver.common.by import By

from phone import chromium, until


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--live", type=int, default=0)
    ap.add_argument("--pictures", type=int, default=0)
    ap.add_argument("--reason", default="")
    ap.add_argument("--flash", action="store_true")
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    a = ap.parse_args()
    d = chromium("1600,900", "--autoplay-policy=no-user-gesture-required", "--js-flags=--expose-gc",
                 "--enable-precise-memory-info")
    failures = []

    def check(name, fn):
        try:
            fn()
            print(f"ok: {name}", flush=True)
        except Exception as e:
            failures.append(name)
            print(f"FAILED: {name}: {e}", flush=True)

    def times():
        return d.execute_script("return [...document.querySelectorAll('.tile video')].map(v => v.currentTime)")

    def playing(n):
        t0 = times()
        time.sleep(2)
        t1 = times()
        moving = [y - x for x, y in zip(t0, t1) if y - x > 1.0]
        return len(moving) >= n and moving

    try:
        d.get(a.url)

        def live():
            moved = until(a.timeout, f"{a.live} tile(s) playing live video", lambda: playing(a.live))
            print(f"    {len(moved)} live tile(s), {['%.2f s' % m for m in moved]} in 2 s")
            extra = d.find_elements(By.CSS_SELECTOR, ".tile video")
            assert len(extra) == a.live, f"{len(extra)} video tiles, {a.live} expected"

        if a.live:
            check(f"{a.live} tile(s) play raw live video", live)

        def pictures():
            def shown():
                imgs = d.find_elements(By.CSS_SELECTOR, ".tile img")
                ready = [i for i in imgs if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)]
                return len(ready) >= a.pictures and ready
            until(a.timeout, f"{a.pictures} tile(s) with the pixelated picture", shown)
            hows = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".tile img ~ .label .how, .tile .label .how")]
            print(f"    labels: {hows}")
            said = [h for h in hows if h.startswith("picture, faces pixelated") and a.reason in h]
            assert len(said) >= a.pictures, f"no reason containing {a.reason!r}: {hows}"

        if a.pictures:
            check(f"{a.pictures} tile(s) show the pixelated picture and say why", pictures)

        if a.flash:
            def flashed():
                t = until(a.timeout * 2, "a tile flashing for its camera's new alert",
                          lambda: d.find_elements(By.CSS_SELECTOR, ".tile.alerting"))
                overlay = d.find_element(By.ID, "alerts").text
                print(f"    flashing: {[x.get_attribute('data-camera') for x in t]}; alerts shown: {overlay.splitlines()[:2]}")
                assert overlay, "no alert overlaid"

            check("a tile flashes when its camera alerts, the newest alerts overlaid", flashed)

        if a.seconds:
            def steady():
                heap = "window.gc && window.gc(); return performance.memory.usedJSHeapSize"
                # The heap after a collection, every 5 s: the first half warms up (code,
                # caches); the second must stay flat.
                samples = []
                for _ in range(int(a.seconds / 5) + 1):
                    samples.append(d.execute_script(heap))
                    time.sleep(5)
                spans = d.execute_script(
                    "return [...document.querySelectorAll('.tile video')].map(v => v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.buffered.start(0) : 0)")
                print(f"    over {a.seconds:.0f} s: JS heap {['%.2f' % (h / 1e6) for h in samples]} MB; video buffers {['%.1f s' % s for s in spans]}")
                half = samples[len(samples) // 2:]
                assert max(half) - half[0] < 1e6, "the page's memory grows"
                assert all(s < 25 for s in spans), "a video buffer keeps growing"
                assert playing(a.live), "the live tiles stopped"

            check(f"the wall runs {a.seconds:.0f} s without growing", steady)

        d.save_screenshot(a.screenshot)
        print("    screenshot:", a.screenshot)

        def console():
            errors = [e for e in d.get_log("browser") if e.get("level") == "SEVERE"]
            assert not errors, errors

        check("no console error", console)
    finally:
        d.quit()
    if failures:
        print("failed:", ", ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Loads a gridsight status page in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium) and checks what a control room relies on:

  * every expected camera is listed with its state, and its thumbnail image loads;
  * an alert that was not on the page when it loaded appears without a reload;
  * (with --orders) an open order shows a ticking countdown;
  * the browser console has no error;
  * a screenshot is saved.

Usage: status_page.py URL --cameras a,b,c --screenshot FILE [--orders] [--thumbnails N]
       [--timeout S]. Prints one line per check; exit 0 when all pass, 1 otherwise.
Run by tests/it/status_page.rs with the Python of .cache/venv (`make setup` installs Selenium).
"""

import argparse
import re
import sys
import time

from selenium.webdriver.common.by import By

import phone


def until(timeout, what, check):
    return phone.until(timeout, what, check, every=0.25)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--cameras", required=True)
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--orders", action="store_true")
    ap.add_argument("--thumbnails", type=int, default=1, help="how many thumbnails must load")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--map", type=int, default=0, help="cameras expected on the map (0: no map check)")
    ap.add_argument("--alert-view", type=int, default=0,
                    help="camera tiles (pictures or live video) that must show in an alert's view (0: no check)")
    ap.add_argument("--nearest", type=int, default=0,
                    help="placed nearby cameras the alert's view must list, nearest first")
    ap.add_argument("--live", type=int, default=0,
                    help="live video tiles that must play in the alert's view and the map's camera view (0: no check)")
    a = ap.parse_args()
    want = a.cameras.split(",")
    d = phone.chromium("1400,1000")
    failures = []

    def check(name, fn):
        try:
            fn()
            print(f"ok: {name}")
        except Exception as e:
            failures.append(name)
            print(f"FAILED: {name}: {e}")

    try:
        d.get(a.url)

        def cameras():
            cards = d.find_elements(By.CSS_SELECTOR, "#cameras .camera")
            listed = {c.get_attribute("data-camera"): c.find_element(By.CSS_SELECTOR, ".state").text for c in cards}
            return listed if all(c in listed and listed[c] for c in want) else None

        check("every camera is listed with its state",
              lambda: print("   ", until(a.timeout, f"cameras {want} listed", cameras)))

        def thumbs():
            n = d.execute_script(
                "return [...document.querySelectorAll('#cameras img.thumb')]"
                ".filter(i => i.complete && i.naturalWidth > 0).length")
            return n >= a.thumbnails and n

        if a.thumbnails:
            check(f"at least {a.thumbnails} thumbnail image(s) load",
                  lambda: print("    loaded:", until(a.timeout, "thumbnails", thumbs)))

        def alert_ids():
            return {r.get_attribute("data-alert") for r in d.find_elements(By.CSS_SELECTOR, "#alerts tbody tr[data-alert]")}

        def live_alert():
            first = alert_ids()
            navigations = d.execute_script("return performance.getEntriesByType('navigation').length")
            new = until(a.timeout, "a new alert row without a reload", lambda: alert_ids() - first)
            assert d.execute_script("return performance.getEntriesByType('navigation').length") == navigations
            assert d.execute_script("return performance.navigation.type") == 0, "the page was reloaded"
            row = d.find_element(By.CSS_SELECTOR, f'#alerts tr[data-alert="{sorted(new)[0]}"]')
            print("    new alert:", row.text)

        check("an alert appears live, without a reload", live_alert)

        if a.orders:
            def countdown():
                cells = d.find_elements(By.CSS_SELECTOR, "#orders td.countdown")
                texts = [c.text for c in cells if re.fullmatch(r"(late )?\d+:\d\d", c.text)]
                return texts and texts[0]

            def ticking():
                t0 = until(a.timeout, "an order with a countdown", countdown)
                t1 = until(5, "the countdown to tick", lambda: (c := countdown()) != t0 and c)
                print(f"    countdown {t0} -> {t1}")

            check("an open order shows its countdown, ticking", ticking)

        if a.map:
            def on_map():
                cams = d.find_elements(By.CSS_SELECTOR, "#map g.cam")
                areas = d.find_elements(By.CSS_SELECTOR, "#map polygon.mg")
                wedges = d.find_elements(By.CSS_SELECTOR, "#map g.cam path.fov")
                return len(cams) >= a.map and areas and wedges and (len(cams), len(areas), len(wedges))

            def the_map():
                n = until(a.timeout, f"{a.map} camera(s) on the map with the micro-grid", on_map)
                print(f"    map: {n[0]} camera(s), {n[1]} micro-grid(s), {n[2]} field(s) of view")
                orders = until(a.timeout, "an open order on the map",
                               lambda: d.find_elements(By.CSS_SELECTOR, "#map circle.order"))
                print(f"    map: {len(orders)} open order(s) placed")

            check("the map shows the micro-grid, the cameras where they look and the open orders", the_map)

        if a.alert_view:
            def alert_view():
                row = until(a.timeout, "an alert row", lambda: d.find_elements(By.CSS_SELECTOR, "#alerts tbody tr[data-alert]"))[0]
                d.execute_script("arguments[0].scrollIntoView()", row)
                row.find_element(By.CSS_SELECTOR, "td").click()
                until(10, "the alert's view", lambda: d.find_element(By.ID, "alert-view").is_displayed())
                loaded = until(a.timeout, f"{a.alert_view} camera tile(s) showing in the alert's view", lambda: (lambda n: n >= a.alert_view and n)(
                    d.execute_script("return [...document.querySelectorAll('#av-tiles img')].filter(i => i.complete && i.naturalWidth > 0).length"
                                     " + [...document.querySelectorAll('#av-tiles figure.live video')].filter(v => v.readyState >= 2).length")))
                captions = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#av-tiles figcaption")]
                print(f"    alert view: {loaded} camera tile(s) showing; tiles: {captions}")
                assert any("its camera" in c for c in captions), captions
                metres = [int(m) for c in captions for m in re.findall(r"\((\d+) m\)", c)]
                assert metres == sorted(metres), f"the nearby cameras are not nearest first: {metres}"
                assert len(metres) >= a.nearest, f"{a.nearest} placed nearby camera(s) expected: {captions}"
                if metres:
                    print(f"    nearby cameras, nearest first: {metres} m")

            check("an alert's view shows its clip and the cameras around it", alert_view)

        if a.live:
            def playing(n):
                # Live tiles whose video advances: currentTime moves by more than 1 s in 2 s.
                t0 = d.execute_script("return [...document.querySelectorAll('#av-tiles figure.live video')].map(v => v.currentTime)")
                time.sleep(2)
                t1 = d.execute_script("return [...document.querySelectorAll('#av-tiles figure.live video')].map(v => v.currentTime)")
                moving = [b - a for a, b in zip(t0, t1) if b - a > 1.0]
                return len(moving) >= n and moving

            def live_video():
                moved = until(a.timeout, f"{a.live} live video tile(s) playing in the alert's view", lambda: playing(a.live))
                print(f"    live: {len(moved)} tile(s) advancing, {['%.2f s' % m for m in moved]} in 2 s")
                # The delay from the node receiving a frame to the page showing it, sampled.
                delays = []
                for _ in range(10):
                    delays += [int(x) for x in d.execute_script(
                        "return [...document.querySelectorAll('#av-tiles figure.live video')].map(v => v.dataset.delayMs).filter(Boolean)")]
                    time.sleep(0.5)
                delays.sort()
                assert delays, "no delay measured"
                print(f"    live delay (node receipt to display): median {delays[len(delays) // 2]} ms, max {delays[-1]} ms over {len(delays)} samples")
                assert delays[len(delays) // 2] < 1500, f"the picture is {delays[len(delays) // 2]} ms behind"

            check("live video plays in the alert's view, less than 1.5 s behind", live_video)

            def map_camera():
                d.find_element(By.ID, "av-close").click()
                cam = d.find_element(By.CSS_SELECTOR, "#map g.cam")
                d.execute_script("arguments[0].scrollIntoView()", cam)
                cam.click()
                until(10, "the camera's view", lambda: d.find_element(By.ID, "alert-view").is_displayed())
                title = d.find_element(By.ID, "av-title").text
                assert title.startswith("camera "), title
                moved = until(a.timeout, "the clicked camera's live video playing", lambda: playing(1))
                print(f"    map click: '{title}', {len(moved)} live tile(s) playing")

            check("a camera clicked on the map opens its live video", map_camera)

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

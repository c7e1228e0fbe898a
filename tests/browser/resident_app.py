#!/usr/bin/env python3
"""The residents' app on a phone-sized headless Chromium (Debian's chromium, Selenium),
against `edge-node dispatch` with reports on and an inspector with the app:

  * a refused report is explained in words (no place given);
  * a resident files a report with a photo, a recorded voice note (Chromium's fake
    microphone) and the phone's position (an emulated GPS fix inside micro-grid m1);
  * its order reaches the inspector's app (their list, through the inspector's token);
  * the inspector accepts, arrives and resolves with a note; the resident's page shows each
    step without a reload, then the note and the rating form; the rating is answered;
  * screenshots of the form and the followed report.

Usage: resident_app.py URL --inspector-token T --photo FILE --shots DIR --lat LAT --lon LON.
Prints one line per check and, last, `RESULT {json}`; exit 0 when all pass, 1 otherwise.
"""

import argparse
import json
import sys
import time
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from phone import FAKE_MICROPHONE, browser, ok, until


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--inspector-token", required=True)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--lat", type=float, required=True)
    ap.add_argument("--lon", type=float, required=True)
    a = ap.parse_args()
    base = a.url.rstrip("/")

    def inspector(path, body=None):
        req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                     method="GET" if body is None else "POST")
        req.add_header("Authorization", "Bearer " + a.inspector_token)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    result = {}
    d = browser(*FAKE_MICROPHONE)
    try:
        d.execute_cdp_cmd("Browser.grantPermissions", {"origin": base, "permissions": ["geolocation", "audioCapture"]})
        d.execute_cdp_cmd("Emulation.setGeolocationOverride", {"latitude": a.lat, "longitude": a.lon, "accuracy": 8})
        d.get(base + "/report/")
        until(10, "the form", lambda: d.find_element(By.ID, "form").is_displayed())
        until(10, "the categories", lambda: len(Select(d.find_element(By.ID, "category")).options) >= 2)
        Select(d.find_element(By.ID, "category")).select_by_value("pothole")
        d.find_element(By.ID, "text").send_keys("deep pothole in front of building 12")
        # No place yet: the app says so in words and sends nothing.
        d.find_element(By.ID, "send").click()
        msg = until(5, "a refusal in words", lambda: d.find_element(By.ID, "problem").text)
        assert "say where it is" in msg, msg
        ok(f"no place: {msg!r}")

        d.find_element(By.ID, "photo").send_keys(a.photo)
        d.find_element(By.ID, "rec").click()
        until(10, "recording", lambda: d.find_element(By.ID, "rec-state").text == "recording…")
        time.sleep(2.5)
        d.find_element(By.ID, "stop").click()
        rec = until(10, "a voice note", lambda: "recorded" in d.find_element(By.ID, "rec-state").text
                    and d.find_element(By.ID, "rec-state").text)
        ok(f"voice note {rec}")
        d.find_element(By.ID, "here").click()
        where = until(15, "the phone's position", lambda: "±" in d.find_element(By.ID, "where").text
                      and d.find_element(By.ID, "where").text)
        ok(f"position {where}")
        d.save_screenshot(f"{a.shots}/resident-form.png")
        d.find_element(By.ID, "send").click()
        until(30, "the report's page", lambda: d.find_element(By.ID, "report").is_displayed())
        rid = d.execute_script("return JSON.parse(localStorage.getItem('gs.reports'))[0].id")
        until(15, "the report's state", lambda: d.find_element(By.ID, "t-state").text == "assigned")
        until(15, "the photo, pixelated", lambda: d.execute_script(
            "const i = document.getElementById('r-photo'); return !i.hidden && i.complete && i.naturalWidth > 0"))
        ok(f"report {rid} filed; the page shows it assigned, with its photo")

        # The inspector's app lists it (their own credential), with the resident's media.
        order = until(15, "the order in the inspector's list", lambda: [
            o for o in inspector("/inspector/api/orders")["orders"] if o["first_alert"] == rid])[0]
        detail = inspector(f"/inspector/api/orders/{order['id']}")
        assert detail["report"]["audio"] and detail["report_photo_url"], detail
        ok(f"order {order['id']} is in the inspector's list, with the resident's photo and voice note")
        result["order"] = order["id"]
        result["report"] = rid

        # Each step of the inspector shows on the resident's page without a reload.
        for i, (action, state, extra) in enumerate([
                ("accept", "accepted", {}), ("arrive", "on site", {}),
                ("resolve", "resolved", {"note": "filled and levelled"})]):
            r = inspector(f"/inspector/api/orders/{order['id']}/update", {"id": f"t-{i}", "action": action, **extra})
            assert r["ok"], r
            until(10, f"{state} on the resident's page", lambda: d.find_element(By.ID, "t-state").text == state)
            ok(f"{action}: the resident sees {state!r}")
        until(10, "the inspector's note", lambda: "filled and levelled" in d.find_element(By.ID, "t-note").text)
        until(10, "the rating form", lambda: d.find_element(By.ID, "rate").is_displayed())
        d.find_elements(By.CSS_SELECTOR, "#stars button")[3].click()
        d.find_element(By.ID, "comment").send_keys("quick, thank you")
        d.find_element(By.ID, "rate-send").click()
        until(10, "the thanks", lambda: "Thank you" in d.find_element(By.ID, "done").text)
        until(10, "the rating shown", lambda: "4 of 5" in d.find_element(By.ID, "rated").text)
        ok("rated 4 of 5; the page says so")
        d.save_screenshot(f"{a.shots}/resident-report.png")
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]
        assert not errors, errors
        ok("no script error in the console")
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    except Exception as e:
        print(f"FAILED: {e}", flush=True)
        try:
            d.save_screenshot(f"{a.shots}/resident-failed.png")
            print("console:", json.dumps(d.get_log("browser"))[:3000])
        except Exception:
            pass
        return 1
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())

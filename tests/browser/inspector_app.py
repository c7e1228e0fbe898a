#!/usr/bin/env python3
"""The inspectors' app on a phone-sized headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium), against a running node that dispatches in-process:

  * the inspector signs in with their token; their order is listed (pushed, no reload);
  * the order's page shows the snapshot, plays the event clip, shows the live picture;
  * the app asked for the spoken summary, which is a WAV of speech of the expected length;
  * accept, then "on site": each step reaches the control room's overview;
  * offline, "resolve" with a note and a photo is queued; back online it is sent once, and a
    resend of the same update changes nothing;
  * the next order goes to this inspector as the nearest on duty (their phone's position;
    another inspector 5 km away) and is listed within 2 s of its creation;
  * screenshots of the list and the order page.

Usage: inspector_app.py URL --token T --photo FILE --shots DIR. Prints one line per check
and, last, `RESULT {json}` for the Rust side; exit 0 when all pass, 1 otherwise.
Run by tests/it/inspector_app.rs with the Python of .cache/venv (`make setup`).
"""

import argparse
import base64
import json
import struct
import sys
import time
import urllib.request

from selenium.webdriver.common.by import By

from phone import FAKE_MICROPHONE, browser, ok, until


def click(d, by, what, timeout=10):
    """Clicks an element the page may redraw under us (the order page is redrawn on every push)."""
    until(timeout, f"to click {what}", lambda: d.find_element(by, what).click() or True)


class Api:
    """The node, as the control room and a second client see it."""

    def __init__(self, base, token):
        self.base, self.token = base.rstrip("/"), token

    def get(self, path, auth=True):
        req = urllib.request.Request(self.base + path)
        if auth:
            req.add_header("Authorization", "Bearer " + self.token)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()

    def post(self, path, body):
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), method="POST")
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def overview_order(self, oid):
        _, body = self.get("/api/overview", auth=False)
        for o in json.loads(body)["orders"]:
            if o["id"] == oid:
                return o
        return None

    def order(self, oid):
        return json.loads(self.get(f"/inspector/api/orders/{oid}")[1])


def wav_seconds(data):
    """Duration and RMS (0-1) of a PCM WAV."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", "not a WAV file"
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            pcm = body if size != 0xFFFFFFFF else data[pos + 8:]
            break
        pos += 8 + size + (size & 1)
    assert fmt and pcm is not None, "no fmt or data chunk"
    _, channels, rate, byte_rate, _, bits = fmt
    seconds = len(pcm) / byte_rate
    n = len(pcm) // 2
    samples = struct.unpack(f"<{n}h", pcm[:n * 2]) if bits == 16 else []
    rms = (sum(s * s for s in samples[::7]) / max(1, len(samples[::7]))) ** 0.5 / 32768 if samples else 0
    return seconds, rms, rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--token", required=True)
    ap.add_argument("--other-token", required=True, help="another inspector of the grid, far away")
    ap.add_argument("--lat", type=float, required=True, help="where this phone is")
    ap.add_argument("--lon", type=float, required=True)
    ap.add_argument("--photo", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--timeout", type=float, default=90)
    a = ap.parse_args()
    api = Api(a.url, a.token)
    result = {}
    d = browser("--autoplay-policy=no-user-gesture-required", *FAKE_MICROPHONE)
    try:
        d.execute_cdp_cmd("Browser.grantPermissions", {"origin": a.url.rstrip("/"), "permissions": ["geolocation"]})
        d.execute_cdp_cmd("Emulation.setGeolocationOverride", {"latitude": a.lat, "longitude": a.lon, "accuracy": 12})
        d.get(a.url.rstrip("/") + "/inspector/")
        until(10, "the sign-in form", lambda: d.find_element(By.ID, "login").is_displayed())
        # A wrong token is answered in words.
        d.find_element(By.ID, "token").send_keys("not-a-real-token-123")
        d.find_element(By.CSS_SELECTOR, "#login-form button").click()
        msg = until(10, "a refusal in words", lambda: d.find_element(By.ID, "problem").text)
        assert "not an inspector's token" in msg, msg
        ok(f"a wrong token is refused: {msg!r}")
        d.find_element(By.ID, "token").clear()
        d.find_element(By.ID, "token").send_keys(a.token)
        d.find_element(By.CSS_SELECTOR, "#login-form button").click()
        until(10, "the list after sign-in", lambda: d.find_element(By.ID, "list").is_displayed())
        until(10, "the live stream", lambda: d.find_element(By.ID, "link").text == "live")
        ok("signed in; the event stream is live")
        # On duty: this phone shares its position; the other inspector is 5 km away.
        d.find_element(By.ID, "duty").click()
        note = until(10, "the position sent", lambda: "Sharing" in d.find_element(By.ID, "duty-note").text
                     and d.find_element(By.ID, "duty-note").text)
        ok(f"on duty: {note!r}")
        far = Api(a.url, a.other_token).post("/inspector/api/position", {"lat": a.lat + 0.045, "lon": a.lon, "accuracy": 10})
        assert far[0] == 200, far

        # The first order of the busy street (pushed: nothing reloads the page).
        card = until(a.timeout, "an order in the list", lambda: d.find_elements(By.CSS_SELECTOR, "#orders li.open"))[0]
        first = card.get_attribute("data-id")
        ok(f"order {first} is listed")
        # Its voice was asked for when it arrived.
        until(20, "the app fetched the spoken summary", lambda: d.execute_script(
            "return performance.getEntriesByType('resource').some(e => e.name.includes('/orders/' + arguments[0] + '/voice'))",
            first))
        status, wav = api.get(f"/orders/{first}/voice")
        seconds, rms, rate = wav_seconds(wav)
        words = len(api.order(first).get("place", "").split()) + 8
        result["voice_seconds"] = round(seconds, 2)
        assert 0.25 * words / 2.5 <= seconds <= 3 * words / 2.5 and rms > 0.01, (seconds, rms, words)
        ok(f"voice: a {seconds:.1f} s WAV at {rate} Hz, RMS {rms:.3f}, for about {words} words")
        d.save_screenshot(f"{a.shots}/inspector-list.png")

        card.click()
        until(10, "the order page", lambda: d.find_element(By.ID, "order").is_displayed())
        until(20, "the snapshot", lambda: d.execute_script(
            "const i = document.getElementById('o-snapshot'); return i.complete && i.naturalWidth > 0"))
        ok("the snapshot shows")
        until(30, "the live picture", lambda: d.execute_script(
            "const i = document.getElementById('o-live'); return i.complete && i.naturalWidth > 0"))
        ok("the live picture shows")
        until(10, "the camera on the map", lambda: d.find_elements(By.CSS_SELECTOR, "#o-map circle")
              and "the camera at" in d.find_element(By.ID, "map-cap").text)
        ok(f"the map: {d.find_element(By.ID, 'map-cap').text!r}")
        t0 = until(a.timeout, "the clip playing", lambda: d.execute_script(
            "const v = document.getElementById('o-clip'); return v.readyState >= 2 && v.currentTime > 0.3 && v.currentTime"),
            every=0.25)
        t1 = until(10, "the clip advancing", lambda: (lambda t: t > t0 and t)(d.execute_script(
            "return document.getElementById('o-clip').currentTime")))
        ok(f"the clip plays ({t0:.2f} s → {t1:.2f} s)")

        # The control room's page, in a second tab, follows each step.
        app_tab = d.current_window_handle
        d.switch_to.new_window("tab")
        d.get(a.url.rstrip("/") + "/")
        room_tab = d.current_window_handle
        d.switch_to.window(app_tab)

        def room_state(oid):
            d.switch_to.window(room_tab)
            try:
                return d.find_element(By.CSS_SELECTOR, f'#orders tr[data-order="{oid}"] td:nth-child(2)').text
            finally:
                d.switch_to.window(app_tab)

        def step(button, state):
            click(d, By.ID, "act-" + button)
            until(10, f"{state} in the app", lambda: d.find_element(By.ID, "o-state").text == state.replace("_", " "))
            o = until(10, f"{state} in the control room's data", lambda: (lambda o: o and o["state"] == state and o)(
                api.overview_order(first)))
            shown = until(10, f"{state} on the control room's page", lambda: (lambda t: t == state and t)(room_state(first)),
                          every=0.5)
            ok(f"{button}: the app says {state}, the control room's page says {shown}")

        step("accept", "accepted")
        step("arrive", "on_site")
        d.save_screenshot(f"{a.shots}/inspector-order.png")

        # Offline: the resolve waits in the phone's queue.
        d.set_network_conditions(offline=True, latency=5, download_throughput=500 * 1024, upload_throughput=500 * 1024)
        click(d, By.ID, "act-resolve")
        d.find_element(By.ID, "r-note").send_keys("bicycle moved off the road; area clear")
        d.find_element(By.ID, "r-photo").send_keys(a.photo)
        d.find_element(By.CSS_SELECTOR, "#resolve-form button").click()
        q = until(15, "the queued update", lambda: d.find_element(By.ID, "queue").text)
        queued = json.loads(d.execute_script("return localStorage.getItem('gs.queue')"))
        assert len(queued) == 1 and queued[0]["body"]["action"] == "resolve", queued
        time.sleep(3)
        assert api.overview_order(first)["state"] == "on_site", "resolved while offline?"
        ok(f"offline: the resolve is kept ({q!r})")
        d.save_screenshot(f"{a.shots}/inspector-offline.png")
        d.set_network_conditions(offline=False, latency=0, download_throughput=-1, upload_throughput=-1)
        until(30, "the queue sent", lambda: not d.find_element(By.ID, "queue").is_displayed(), every=0.25)
        o = until(15, "resolved in the control room", lambda: (lambda o: o is None or o["state"] == "resolved")(
            api.overview_order(first)))
        detail = api.order(first)
        resolved = [e for e in detail["timeline"] if e["event"] == "resolved"]
        assert detail["state"] == "resolved" and len(resolved) == 1, detail["timeline"]
        assert detail["photo_url"], "no photo kept"
        # The same update again (a phone that never saw the answer): answered, nothing changes.
        status, again = api.post(f"/inspector/api/orders/{first}/update", queued[0]["body"])
        assert status == 200 and again["duplicate"], again
        assert [e["event"] for e in api.order(first)["timeline"]].count("resolved") == 1
        ok("back online: resolved once; the same update again is a duplicate")
        result["order"] = first
        result["photo_url"] = detail["photo_url"]

        # The next order of the street reaches the app within 2 s of its creation: the page
        # notes when each order first came (pushed), the order says when it was made.
        d.find_element(By.ID, "back").click()
        new = until(a.timeout, "a new order in the list", lambda: [
            e.get_attribute("data-id") for e in d.find_elements(By.CSS_SELECTOR, "#orders li.open")
            if e.get_attribute("data-id") != first], every=0.05)[0]
        shown_ms = d.execute_script("return window.gsFirstSeen[arguments[0]]", new)
        created_ms = api.order(new)["created_ms"]
        why = [e["detail"] for e in api.order(new)["timeline"] if e["event"] == "assigned"]
        assert why and why[0].startswith("nearest, "), f"order {new} was not given to the nearest: {why}"
        ok(f"order {new} went to this phone: {why[0]}")
        result["nearest"] = why[0]
        result["push_ms"] = round(shown_ms - created_ms)
        assert shown_ms - created_ms <= 2000, f"order {new} listed {shown_ms - created_ms:.0f} ms after its creation"
        ok(f"order {new} listed {shown_ms - created_ms:.0f} ms after its creation")

        # The control room records a voice message for it on its page; the app plays it.
        d.switch_to.window(room_tab)
        click(d, By.CSS_SELECTOR, f'#orders tr[data-order="{new}"] button.record', timeout=30)
        until(10, "recording in the control room", lambda: "recording" in d.find_element(
            By.CSS_SELECTOR, f'#orders tr[data-order="{new}"] td:last-child').text)
        time.sleep(2)
        click(d, By.CSS_SELECTOR, f'#orders tr[data-order="{new}"] button.record')
        sent = until(15, "the message sent", lambda: (lambda t: "sent" in t and t)(d.find_element(
            By.CSS_SELECTOR, f'#orders tr[data-order="{new}"] td:last-child').text))
        ok(f"control room: {sent.strip()!r}")
        d.switch_to.window(app_tab)
        # It plays after the announcements queued before it (about 7 s each: this order's,
        # and any order the street raised meanwhile); a loaded machine stalls them further.
        until(60, "the app played the voice message", lambda: d.execute_script(
            "return performance.getEntriesByType('resource').some(e => e.name.endsWith('/orders/' + arguments[0] + '/messages/1'))",
            new))
        status, audio = api.get(f"/orders/{new}/messages/1")
        assert status == 200 and len(audio) > 1000, (status, len(audio))
        ok(f"the inspector's app played the control room's message ({len(audio)} bytes)")

        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"
                  and "Failed to load resource" not in e["message"] and "ERR_INTERNET_DISCONNECTED" not in e["message"]]
        assert not errors, errors
        ok("no script error in the console")
        d.save_screenshot(f"{a.shots}/inspector-list-2.png")
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    except Exception as e:
        print(f"FAILED: {e}", flush=True)
        try:
            d.save_screenshot(f"{a.shots}/inspector-failed.png")
            print("console:", json.dumps(d.get_log("browser"))[:3000])
        except Exception:
            pass
        return 1
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())

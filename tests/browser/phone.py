"""What the browser tests share: a headless Chromium (Debian's chromium and chromium-driver,
Selenium), phone-sized for the apps, waiting for the page, and printing checks."""

import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium(window, *flags, phone=False):
    """A headless Chromium of `window` ("W,H") with its console log kept; `flags` are more
    Chromium switches (a fake microphone, autoplay without a tap); `phone` emulates a phone's
    screen (touch, pixel ratio 2, a phone's user agent)."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={window}", "--no-first-run", "--disable-extensions", *flags):
        opts.add_argument(a)
    if phone:
        w, h = (int(v) for v in window.split(","))
        opts.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": w, "height": h, "pixelRatio": 2.0, "touch": True},
            "userAgent": "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                         "Chrome/120.0 Mobile Safari/537.36",
        })
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))


def browser(*flags):
    """A 390x844 phone (see `chromium`)."""
    return chromium("390,844", *flags, phone=True)


FAKE_MICROPHONE = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")


def until(timeout, what, check, every=0.1):
    """`check()`'s first true value within `timeout` seconds, else an error naming `what`."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = check()
            if last:
                return last
        except Exception as e:  # the DOM changes under us while the page updates
            last = e
        time.sleep(every)
    raise AssertionError(f"{what} (last seen: {last!r})")


def ok(text):
    print(f"ok: {text}", flush=True)

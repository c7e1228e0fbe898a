"""What the apps' browser tests share: a phone-sized headless Chromium (Debian's chromium
and chromium-driver, Selenium), waiting for the page, and printing checks."""

import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def browser(*flags):
    """A 390x844 phone (touch, a phone's user agent) with its console log kept; `flags` are
    more Chromium switches (a fake microphone, autoplay without a tap)."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=390,844", "--no-first-run", "--disable-extensions", *flags):
        opts.add_argument(a)
    opts.add_experimental_option("mobileEmulation", {
        "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0, "touch": True},
        "userAgent": "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/120.0 Mobile Safari/537.36",
    })
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))


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

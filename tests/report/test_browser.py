"""report.html in a real browser: headless Chromium through chromedriver (selenium).

The page must load with no console error, make no network request (every request is file: or
data:), and show its figures: each <img> decodes to a non-trivial bitmap and is laid out at a
readable size. A full-page screenshot is taken (set LIANDAN_SCREENSHOT_DIR to keep it).

Chromium and chromedriver are Debian packages (``chromium``, ``chromium-driver``); when absent the
fixture installs them with apt-get (as root), and skips with the reason when that is impossible.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
]


def _find(names: tuple[str, ...]) -> str | None:
    for n in names:
        path = shutil.which(n) or (n if os.path.isabs(n) and os.access(n, os.X_OK) else None)
        if path:
            return path
    return None


def _apt_install() -> str | None:
    """Install chromium + chromium-driver with apt-get; returns why not, or None on success."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "not root: cannot apt-get install chromium chromium-driver"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=300, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"],
            check=True,
            capture_output=True,
            timeout=900,
            env=env,
        )
    except (subprocess.SubprocessError, OSError) as e:
        return f"apt-get install chromium chromium-driver failed: {str(e).splitlines()[0]}"
    return None


@pytest.fixture(scope="session")
def chrome_paths() -> tuple[str, str]:
    browser, driver = _find(BROWSERS), _find(DRIVERS)
    if browser is None or driver is None:
        why = _apt_install()
        browser, driver = _find(BROWSERS), _find(DRIVERS)
        if browser is None or driver is None:
            pytest.skip(why or "chromium / chromedriver not found after apt-get install")
    return browser, driver


@pytest.fixture
def driver(chrome_paths, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the [test] extra")
    from selenium.webdriver.chrome.service import Service

    browser, drv = chrome_paths
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for f in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(f)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # never let selenium-manager fetch a driver
    d = webdriver.Chrome(service=Service(executable_path=drv), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _screenshot(driver) -> bytes:
    """Full-page PNG through the DevTools protocol (beyond the viewport)."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    return base64.b64decode(shot["data"])


@pytest.mark.slow
def test_report_in_chromium(driver, report_run: Path, tmp_path):
    from PIL import Image

    from liandan.report import write_report

    page = write_report(report_run)
    driver.get("about:blank")
    driver.get_log("performance"), driver.get_log("browser")  # drain the start page's own loads
    driver.get(page.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert "digits-lenet" in driver.title

    errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, f"console errors: {errors}"
    urls = _requests(driver)
    assert urls, "the performance log recorded no request at all (not even the page)"
    foreign = [u for u in urls if not u.startswith(("file:", "data:"))]
    assert not foreign, f"network requests: {foreign}"

    imgs = driver.execute_script(
        "return Array.from(document.images).map(i => {const r = i.getBoundingClientRect();"
        "return {alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,"
        "shown_w: r.width, shown_h: r.height, data: i.src.startsWith('data:image/png;base64,')}})"
    )
    alts = {i["alt"] for i in imgs}
    assert {"loss", "metrics", "lr", "grad_norm", "confusion", "calibration", "ood_0"} <= alts, alts
    for i in imgs:
        assert i["complete"] and i["data"], i
        assert i["w"] >= 300 and i["h"] >= 200, f"{i['alt']} decoded to {i['w']}x{i['h']}"
        assert i["shown_w"] >= 250 and i["shown_h"] >= 150, f"{i['alt']} laid out at {i['shown_w']}x{i['shown_h']}"

    text = driver.find_element("tag name", "body").text
    for heading in (
        "Overview",
        "Training curves",
        "Evaluation",
        "Doctor",
        "Out-of-distribution detection",
        "Model",
        "Recipe",
        "exploding_gradients",
        "clip gradients by global norm",
    ):
        assert heading in text, heading
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"), (
        "the page scrolls sideways"
    )

    png = _screenshot(driver)
    shot = Image.open(io.BytesIO(png))
    assert shot.width >= 1000 and shot.height >= 2000, shot.size
    colours = shot.convert("RGB").resize((64, 256)).getcolors(64 * 256) or []
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    keep = os.environ.get("LIANDAN_SCREENSHOT_DIR")
    (Path(keep) if keep else tmp_path).mkdir(parents=True, exist_ok=True)
    (Path(keep) if keep else tmp_path).joinpath("report.png").write_bytes(png)

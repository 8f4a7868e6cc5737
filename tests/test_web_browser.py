"""The commissioning page in a real browser (Debian's headless Chromium driven by Selenium, a phone-sized window)
against `pid-agent commission` on a replayed walk: log in, see the picture, draw a zone, set its sensitivity,
smallest object and person heights (dragging the person figure), save it, be refused invalid values beside their
field, and see the replayed person in the walk test's list; the 360° unit's strip with its bearings and sectors.
Screenshots of each step go to build/screenshots/<test>/ (looked at by a person: large controls, high contrast).

Every wait is on a condition of the page (never a sleep): the page redraws as the unit's answers arrive."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from datetime import datetime
from pathlib import Path

import pytest

from drivers.camera.synthetic import figure_position
from tests.footage import under_ci
from tests.net import free_port as _free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PASSWORD = "ladder-and-hivis"
PHONE = (390, 844)  # a phone's screen in CSS pixels

pytestmark = pytest.mark.slow


def _need_browser() -> None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver; pip selenium)"
        if under_ci():
            pytest.fail(message + "; CI=true requires them")
        pytest.skip(message)



def _commission(tmp_path: Path, clip: Path, more_toml: str = ""):
    """`pid-agent commission` on a looped replay of `clip`, HTTPS on a free loopback port: (url, config, process)."""
    (tmp_path / "password").write_text(PASSWORD + "\n", encoding="utf-8")
    port = _free_port()
    config = tmp_path / "unit.toml"
    config.write_text(f'device_id = "pid-web-01"\ndata_dir = "{tmp_path / "data"}"\n[camera]\nbackend = "replay"\n'
                      f'source = "{clip}"\n[recorder]\npost_roll_s = 1.0\n[commissioning]\nport = {port}\n'
                      f'password_file = "{tmp_path / "password"}"\n{more_toml}', encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "agent", "commission", "--config", str(config)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = process.stdout.readline()  # "commissioning page at https://..." once it listens
    assert "commissioning page at" in line, line + process.stdout.read()
    return f"https://127.0.0.1:{port}/", config, process


@pytest.fixture
def unit(tmp_path):
    """The page on a looped replay of the demo walk."""
    _need_browser()
    from evaluation.demo import write_demo

    clip = tmp_path / "walk.mp4"
    write_demo(clip, seconds=14.0, width=320, height=180)
    url, config, process = _commission(tmp_path, clip)
    yield url, config
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def unit_360(tmp_path):
    """The page of a 360° unit (an overhead fisheye, two named sectors) on a looped fisheye walk."""
    _need_browser()
    from tests.fisheye_walk import write_fisheye_walk

    clip = write_fisheye_walk(tmp_path / "fisheye.mp4")
    sectors = ('[panorama]\nenabled = true\n[[panorama.sectors]]\nname = "gate"\nstart_deg = 60\nend_deg = 140\n'
               '[[panorama.sectors]]\nname = "drive"\nstart_deg = 200\nend_deg = 290\n')
    url, config, process = _commission(tmp_path, clip, sectors)
    yield url, config
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={PHONE[0]},{PHONE[1]}"):
        options.add_argument(flag)
    options.accept_insecure_certs = True  # the unit's own self-signed certificate
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # a phone's screen: headless Chromium keeps its window wider than a phone's, so the page is told the size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": PHONE[0], "height": PHONE[1],
                                                                   "deviceScaleFactor": 1, "mobile": True})
    yield driver
    driver.quit()


def _shot(driver, request, name: str, element: str | None = None) -> None:
    """A screenshot of the phone's screen, with `element` (an id) scrolled to the screen's middle, into
    build/screenshots/<test>/."""
    from selenium.webdriver.support.ui import WebDriverWait

    folder = ROOT / "build" / "screenshots" / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    if element is not None:
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView({block: 'center'})", element)
        WebDriverWait(driver, 5).until(lambda d: d.execute_script(  # in the middle, or the page can go no further
            "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
            "return Math.abs(r.top + r.height / 2 - window.innerHeight / 2) < 2 || window.scrollY === 0 ||"
            "window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2", element))
    driver.save_screenshot(str(folder / f"{name}.png"))


WALK_START_S = next(index / 10 for index in range(300) if figure_position(index / 10, 320, 180))  # 10 fps
SEEN_SCRIPT = """window.firstWalkSeen = null;
new MutationObserver((_, observer) => {
  if (!document.querySelector('#walk-list li.walk-detection')) return;
  window.firstWalkSeen = Date.now();
  observer.disconnect();
}).observe(document.getElementById('walk-list'), {childList: true});"""


def _fetch_json(driver, path: str) -> dict:
    return driver.execute_async_script("fetch(arguments[0], {cache: 'no-store'}).then(r => r.json())"
                                       ".then(arguments[arguments.length - 1])", path)


def _replayed_time(driver) -> float:
    """Where the looped replay is: the live view's frame index at 10 fps."""
    frame = _fetch_json(driver, "/api/state")["view"]["frame"]
    return 1e9 if frame is None else frame / 10



def _first_text(driver, selector: str) -> str | None:
    """The text of the first element matching selector, read in the page (None while there is none)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                                 selector) or None

def _marker_head(driver, which: str) -> tuple[int, int]:
    """Where the person figure's head handle is, as an offset from the canvas centre (the page's own geometry)."""
    fx, head, width, height = driver.execute_script(
        "const [x, y] = feet(arguments[0]), c = document.getElementById('overlay').getBoundingClientRect();"
        "return [x, handleY((y - markerShare(arguments[0]).share) * c.height), c.width, c.height];", which)
    return round(fx * width - width / 2), round(head - height / 2)


def _in_view(driver, element):
    """The element scrolled to the screen's middle (pointer actions at an offset do not scroll by themselves)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    return element


def _value(driver, element_id: str) -> str:
    return driver.execute_script("return document.getElementById(arguments[0]).value", element_id)


def _log_in(browser, wait) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-button").click()
    wait.until(lambda d: "ARMED" in d.find_element(By.ID, "status").text)


def test_installer_logs_in_draws_a_zone_and_walks(unit, browser, request):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, config_path = unit
    wait = WebDriverWait(browser, 20)
    browser.get(url)
    browser.find_element(By.ID, "password").send_keys("wrong-password")
    browser.find_element(By.ID, "login-button").click()
    wait.until(lambda d: d.find_element(By.ID, "login-error").text == "Wrong password")
    _shot(browser, request, "0-login-refused")
    browser.find_element(By.ID, "password").clear()
    _log_in(browser, wait)

    # the live view shows a frame of the replay, and the unit's state
    wait.until(lambda d: d.execute_script("const p = document.getElementById('picture');"
                                          "return p.complete && p.naturalWidth > 0 ? p.naturalWidth : 0") == 320)
    _shot(browser, request, "1-live-view")

    # draw a detection zone on the picture: four corners, near the picture's own corners
    canvas = browser.find_element(By.ID, "overlay")
    half_w, half_h = canvas.size["width"] * 0.45, canvas.size["height"] * 0.45
    _in_view(browser, canvas)
    for dx, dy in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)):
        ActionChains(browser).move_to_element_with_offset(canvas, int(dx), int(dy)).click().perform()
    assert browser.find_element(By.ID, "corner-count").text == "4"
    name = browser.find_element(By.ID, "zone-name")
    name.clear()
    name.send_keys("yard")
    for field, value in (("zone-sensitivity", "1.5"), ("zone-min-size", "0.05")):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    _shot(browser, request, "2-zone-drawn-with-person-figures", "stage")

    # drag the near edge's person figure taller by its head; the far edge takes the unit's default with it
    assert _value(browser, "zone-near-height") == "" and _value(browser, "zone-far-height") == ""
    default_near = browser.execute_script("return markerShare('near').share")
    _in_view(browser, canvas)
    head_x, head_y = _marker_head(browser, "near")
    ActionChains(browser).move_to_element_with_offset(canvas, head_x, head_y).click_and_hold() \
        .move_by_offset(0, -15).move_by_offset(0, -15).release().perform()
    wait.until(lambda d: _value(d, "zone-near-height") != "" and _value(d, "zone-far-height") != "")
    near, far = float(_value(browser, "zone-near-height")) / 100, float(_value(browser, "zone-far-height")) / 100
    assert near > default_near + 20 / canvas.size["height"] and 0 < far < near, (near, far, default_near)
    assert browser.find_element(By.ID, "corner-count").text == "4"  # the drag added no corner
    _shot(browser, request, "3-near-figure-dragged", "stage")
    browser.find_element(By.ID, "save-zone").click()
    wait.until(lambda d: "Saved 1 zone" in d.find_element(By.ID, "zone-result").text)
    saved = tomllib.loads(config_path.read_text(encoding="utf-8"))["detection"]["zones"]
    assert [(zone["name"], zone["kind"], len(zone["polygon"])) for zone in saved] == [("yard", "detect", 4)]
    assert all(0.0 < x < 0.1 or 0.9 < x < 1.0 for x, _ in saved[0]["polygon"])
    assert (saved[0]["sensitivity"], saved[0]["min_area"]) == (1.5, 0.0005)
    assert saved[0]["person_height_near"] == pytest.approx(near, abs=1e-3)
    assert saved[0]["person_height_far"] == pytest.approx(far, abs=1e-3)
    wait.until(lambda d: "sensitivity 1.5, smallest 0.05%, person " in d.find_element(By.ID, "zone-list").text)
    _shot(browser, request, "4-zone-saved", "zone-list")

    # drag the saved zone's first corner (top left) towards the middle, and save the move
    ActionChains(browser).move_to_element_with_offset(_in_view(browser, canvas), int(-half_w), int(-half_h)) \
        .click_and_hold() \
        .move_by_offset(40, 20).move_by_offset(20, 10).release().perform()
    assert browser.find_element(By.ID, "corner-count").text == "0"  # a drag adds no corner
    # the button shows once the page has taken the drag in: wait for it rather than race the page
    wait.until(lambda d: d.find_element(By.ID, "save-moved").is_displayed() and
               d.find_element(By.ID, "save-moved").is_enabled())
    browser.find_element(By.ID, "save-moved").click()
    wait.until(lambda d: d.find_element(By.ID, "save-moved").get_attribute("hidden") is not None)
    wait.until(lambda d: "Saved 1 zone" in d.find_element(By.ID, "zone-result").text)
    moved = tomllib.loads(config_path.read_text(encoding="utf-8"))["detection"]["zones"][0]
    assert moved["polygon"][1:] == saved[0]["polygon"][1:], moved
    assert 0.1 < moved["polygon"][0][0] < 0.4 and 0.1 < moved["polygon"][0][1] < 0.4, moved
    assert moved["person_height_near"] == saved[0]["person_height_near"]  # a move keeps the zone's settings

    # the motion mask over the picture, at the picture's size
    browser.find_element(By.ID, "show-mask").click()
    wait.until(lambda d: d.execute_script("const m = document.getElementById('mask');"
                                          "return !m.hidden && m.complete ? m.naturalWidth : 0") == 320)
    _shot(browser, request, "5-corner-moved-and-motion-mask", "status")
    browser.find_element(By.ID, "show-mask").click()
    assert "temp " in browser.find_element(By.ID, "status").text

    # open the saved zone again: a sensitivity the unit does not take is refused beside its field
    browser.find_element(By.CSS_SELECTOR, "#zone-list .edit-zone").click()
    wait.until(lambda d: _value(d, "zone-sensitivity") == "1.5" and
               d.find_element(By.ID, "corner-count").text == "4")
    assert "Editing zone yard" in browser.find_element(By.ID, "zone-legend").text
    browser.find_element(By.ID, "zone-sensitivity").clear()
    browser.find_element(By.ID, "zone-sensitivity").send_keys("9")
    browser.find_element(By.ID, "save-zone").click()
    wait.until(lambda d: "less than or equal to 4" in d.find_element(By.ID, "zone-sensitivity-error").text)
    assert "invalid" in browser.find_element(By.ID, "zone-sensitivity").get_attribute("class")
    assert tomllib.loads(config_path.read_text(encoding="utf-8"))["detection"]["zones"][0]["sensitivity"] == 1.5
    _shot(browser, request, "6-sensitivity-refused-beside-its-field", "zone-sensitivity-error")
    browser.find_element(By.ID, "cancel-edit").click()
    wait.until(lambda d: d.find_element(By.ID, "corner-count").text == "0" and
               d.find_element(By.ID, "zone-sensitivity-error").text == "")

    # an invalid zone (two corners) is refused with the agent's own message, beside its corners
    ActionChains(browser).move_to_element_with_offset(_in_view(browser, canvas), 0, 0).click().perform()
    ActionChains(browser).move_to_element_with_offset(canvas, 20, 20).click().perform()
    name.clear()
    name.send_keys("gate")
    browser.find_element(By.ID, "save-zone").click()
    wait.until(lambda d: "needs at least 3 corners, got 2" in d.find_element(By.ID, "corner-count-error").text)
    assert "invalid" in browser.find_element(By.ID, "corner-count").get_attribute("class")
    assert len(tomllib.loads(config_path.read_text(encoding="utf-8"))["detection"]["zones"]) == 1
    _shot(browser, request, "7-zone-refused", "corner-count-error")
    browser.find_element(By.ID, "clear-corners").click()

    # walk test on before the loop reaches the person, so their first frame is seen with the test on
    WebDriverWait(browser, 40, poll_frequency=0.1).until(lambda d: _replayed_time(d) < WALK_START_S - 3)
    browser.execute_script(SEEN_SCRIPT)
    browser.find_element(By.ID, "walk-toggle").click()
    wait.until(lambda d: d.find_element(By.ID, "walk-status").text.startswith("On"))
    # the list is redrawn as lines arrive: read its text in one go in the page, not through a held element
    first = WebDriverWait(browser, 40).until(lambda d: _first_text(d, "#walk-list li.walk-detection"))
    assert " in yard" in first
    line = _fetch_json(browser, "/api/state")["walk"]["detections"][0]
    # from the person's first frame to the line on the page: the unit's detection delay in frame time, then
    # from the unit's clock at that detection to the browser's when the line appeared (one machine, one clock)
    detecting_s = line["frame_ts"] - WALK_START_S
    showing_s = browser.execute_script("return window.firstWalkSeen") / 1000 - datetime.fromisoformat(
        line["time"]).timestamp()
    print(f"walk test: person's first frame to the page's line {detecting_s + showing_s:.2f} s (detected "
          f"{detecting_s:.2f} s into the walk, shown {showing_s:.2f} s later): {first!r}")
    assert 0 <= detecting_s and detecting_s + showing_s < 2.0
    # the alarm the walk raises names the zone just saved
    assert " in yard" in WebDriverWait(browser, 20).until(lambda d: _first_text(d, "#walk-list li.alarm"))
    _shot(browser, request, "8-walk-test", "walk-toggle")


def test_the_360_unit_shows_bearings_and_sectors_along_its_strip(unit_360, browser, request):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _config = unit_360
    wait = WebDriverWait(browser, 30)
    browser.get(url)
    _log_in(browser, wait)
    wait.until(lambda d: d.find_element(By.ID, "ruler").is_displayed())
    wait.until(lambda d: d.execute_script("const p = document.getElementById('picture');"
                                          "return p.complete ? p.naturalWidth / Math.max(1, p.naturalHeight) : 0") > 4)
    ruler = browser.find_element(By.ID, "ruler")
    bearings = [item.text for item in ruler.find_elements(By.CSS_SELECTOR, ".bearing")]
    sectors = [item.text for item in ruler.find_elements(By.CSS_SELECTOR, ".sector")]
    assert bearings == ["N", "NE", "E", "SE", "S", "SW", "W", "NW", "N"] and sectors == ["gate", "drive"]
    # each mark sits at its bearing along the picture (north's 20° repeat past the seam at the right end)
    picture = browser.find_element(By.ID, "picture").rect
    east = ruler.find_elements(By.CSS_SELECTOR, ".bearing")[2].rect
    assert abs((east["x"] - picture["x"]) / picture["width"] - 90 / 380) < 0.01
    # the strip is shown tall enough to draw on (scrolled sideways on a phone), its ruler under it
    assert picture["height"] >= 200 and ruler.rect["y"] >= picture["y"] + picture["height"] - 1
    _shot(browser, request, "1-strip-with-bearings-and-sectors", "status")
    browser.execute_script("document.getElementById('stage-scroll').scrollLeft = 9999")
    wait.until(lambda d: d.execute_script("return document.getElementById('stage-scroll').scrollLeft") > 0)
    _shot(browser, request, "2-strip-scrolled-to-the-west", "status")

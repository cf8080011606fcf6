"""The dashboard in a real headless browser (Debian chromium driven by Selenium): the fleet page lists the
simulated device, its page toggles a pin on the real firmware, shows changes made elsewhere and input edges
live, and chats with it. Screenshots are kept as test artifacts (and copied to $WISP_ARTIFACTS if set)."""
import json
import os
import shutil

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.stack import Stack
from tests.support import Probe
from tools import broker as brokers

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
TOKEN = "dash-token-5f3a9c"
# porch_light switches back on right after Home Assistant switched it off: no relay rest (min_interval_ms)
PINS = {"porch_light": {"pin": 5, "mode": "out", "min_interval_ms": 0}, "door": {"pin": 4, "mode": "in", "pull": "up"}}
WAIT_S = 8


@pytest.fixture(scope="module")
def stack():
    port = brokers.free_port()
    with Stack(bridge_env={"WISP_API_TOKEN": TOKEN, "WISP_HTTP": f"127.0.0.1:{port}"}) as s:
        s.start_device("dash1", pins=PINS)
        s.url = f"http://127.0.0.1:{port}"
        yield s


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("needs Debian chromium and chromium-driver: run `python3 tools/system_deps.py --for test`")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def _wait(driver, what, cond):
    try:
        # the page re-renders its tables as data arrives: an element read mid-render is read again
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.05, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(lambda d: cond(d))
    except TimeoutException:
        page = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"dashboard: no {what} within {WAIT_S} s; page text:\n{page}") from None


def _pin_state(driver, name):
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-pin="{name}"] .pin-state').text


def _retained(stack, topic):
    """What a newcomer gets from the broker: the retained value of `topic`."""
    p = Probe(stack.broker.host, stack.broker.port, topics=(topic,))
    try:
        return p.wait_for(topic, timeout=3)
    finally:
        p.close()


def _screenshot(driver, tmp_path, name):
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("WISP_ARTIFACTS"):
        os.makedirs(os.environ["WISP_ARTIFACTS"], exist_ok=True)
        shutil.copy(path, os.environ["WISP_ARTIFACTS"])
    return path


def test_without_a_token_the_page_asks_for_one_and_shows_no_data(stack, browser):
    browser.get(stack.url + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(stack.url + "/")
    _wait(browser, "a token form", lambda d: d.find_element(By.ID, "login").is_displayed())
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-device]")


def test_fleet_page_lists_the_device_online(stack, browser, tmp_path):
    browser.get(f"{stack.url}/#token={TOKEN}")
    link = _wait(browser, "device dash1 listed", lambda d: d.find_element(By.CSS_SELECTOR, 'a[data-device="dash1"]'))
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-device-row="dash1"]')
    assert row.find_element(By.CSS_SELECTOR, ".dot").get_attribute("title") == "online"
    assert "#token" not in browser.current_url  # the token does not stay in the address bar
    _wait(browser, "the tier table", lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-tier="local"]'))
    link.click()
    _wait(browser, "device page with its pins", lambda d: _pin_state(d, "porch_light") == "OFF")


def test_toggle_a_pin_from_the_page_switches_the_simulated_device(stack, browser, tmp_path):
    browser.get(f"{stack.url}/#/device/dash1")
    _wait(browser, "porch_light OFF", lambda d: _pin_state(d, "porch_light") == "OFF")
    browser.find_element(By.CSS_SELECTOR, 'tr[data-pin="porch_light"] .pin-toggle').click()
    _wait(browser, "porch_light ON after the click", lambda d: _pin_state(d, "porch_light") == "ON")
    assert _retained(stack, "wisp/dash1/state/porch_light") == "ON"
    button = browser.find_element(By.CSS_SELECTOR, 'tr[data-pin="porch_light"] .pin-toggle')
    assert button.text == "Turn off"


def test_changes_made_elsewhere_show_up_live(stack, browser, tmp_path):
    browser.get(f"{stack.url}/#/device/dash1")
    _wait(browser, "live events connected", lambda d: d.find_element(By.ID, "live").text == "live")
    _wait(browser, "pins shown", lambda d: _pin_state(d, "door") == "ON")
    stack.probe.publish("wisp/dash1/set/porch_light", "OFF")  # Home Assistant, say
    _wait(browser, "porch_light OFF pushed over the WebSocket", lambda d: _pin_state(d, "porch_light") == "OFF")
    workdir = stack.dir / "devices" / "dash1"
    (workdir / "sim_inputs.json").write_text(json.dumps({"pins": {"4": 0}}))  # the door opens
    _wait(browser, "the door input going OFF", lambda d: _pin_state(d, "door") == "OFF")


def test_chat_with_the_device(stack, browser, tmp_path):
    browser.get(f"{stack.url}/#/device/dash1")
    box = _wait(browser, "the chat box", lambda d: d.find_element(By.ID, "ask-text"))
    _wait(browser, "pins shown", lambda d: _pin_state(d, "porch_light") in ("ON", "OFF"))
    box.send_keys("please make the porch bright")  # not a fast-path phrase: goes through the bridge's tier
    browser.find_element(By.CSS_SELECTOR, "#ask-form button").click()
    reply = _wait(browser, "a reply from the device",
                  lambda d: d.find_element(By.CSS_SELECTOR, "#chat-log .msg.device .text"))
    assert reply.text == "The porch light is on."
    meta = browser.find_element(By.CSS_SELECTOR, "#chat-log .msg.device .meta").text
    assert "llm" in meta and "local" in meta
    _wait(browser, "porch_light ON after the chat", lambda d: _pin_state(d, "porch_light") == "ON")
    _wait(browser, "schedules loaded", lambda d: d.find_element(By.ID, "schedules").text not in ("", "…"))
    _wait(browser, "the model's tool call in the events", lambda d: "called gpio_write(pin=porch_light, value=1)"
          in d.find_element(By.ID, "events").text)
    events = browser.find_element(By.ID, "events").text
    assert "cmd ok" not in events      # the page's own schedule/routine/memory reads are not events
    shot = _screenshot(browser, tmp_path, "dashboard-device.png")
    assert shot.stat().st_size > 10_000


def test_a_request_the_device_answers_itself_is_shown_as_answered_by_the_device(stack, browser):
    browser.get(f"{stack.url}/#/device/dash1")
    box = _wait(browser, "the chat box", lambda d: d.find_element(By.ID, "ask-text"))
    box.send_keys("could you switch the porch light off, please?")
    browser.find_element(By.CSS_SELECTOR, "#ask-form button").click()
    reply = _wait(browser, "the device's own answer", lambda d: [
        m for m in d.find_elements(By.CSS_SELECTOR, "#chat-log .msg.device") if "porch light is off" in m.text])
    meta = reply[-1].find_element(By.CSS_SELECTOR, ".meta").text
    assert meta.startswith("device") and "llm" not in meta, meta
    _wait(browser, "porch_light OFF", lambda d: _pin_state(d, "porch_light") == "OFF")


def test_fleet_page_charts_the_recent_rounds_even_after_a_reload(stack, browser, tmp_path):
    browser.get(f"{stack.url}/#/")
    browser.refresh()                # a new page: the rounds come from the bridge's history, not this page
    _wait(browser, "the tier's request count", lambda d: int(
        d.find_element(By.CSS_SELECTOR, 'tr[data-tier="local"] td:nth-child(3)').text) >= 2)
    def two_dots(d):
        dots = d.find_elements(By.CSS_SELECTOR, ".charts svg circle")
        return dots if len(dots) >= 2 else None
    dots = _wait(browser, "dots in the latency chart", two_dots)
    assert len(dots) >= 2  # round 0 (the tool call) and round 1 (the answer) of the chat
    _screenshot(browser, tmp_path, "dashboard-fleet.png")


def test_the_fleet_page_says_when_the_bridge_has_lost_its_broker(stack, browser):
    """Without its broker the bridge hears no device, and the page kept showing them online as if all were well.
    Last in this file: the broker is stopped and started again (the devices reconnect)."""
    browser.get(f"{stack.url}/#/")
    _wait(browser, "device dash1 listed", lambda d: d.find_element(By.CSS_SELECTOR, 'a[data-device="dash1"]'))
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-broker="down"]')
    stack.stop_broker()
    try:
        warning = WebDriverWait(browser, 20, poll_frequency=0.1).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[data-broker="down"]'))
        assert "lost its broker" in warning[0].text
    finally:
        stack.start_broker()
    WebDriverWait(browser, 40, poll_frequency=0.2).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-broker="down"]'))

"""The web console in a real headless browser (Debian's chromium and
chromium-driver, driven by Selenium) against a real gateway process, with
simulated nodes sending real frames over UDP and a real Mosquitto behind
its MQTT route.

What a field engineer must be able to see, live, without reloading:
the node list; a node going silent turning amber, then red; a wire break
showing bad quality with its reason; a route whose broker stops showing
disconnected with its lag growing, then recovering; a registered node that
never sent (and one with the wrong key) listed as waiting for its first
frame; 1,000 nodes paged and filtered by the server.

Screenshots are taken at each step (``tmp_path``); with
``SMEMET_DOCS_SCREENSHOTS=1`` the ones the guides use are written to
docs/images/ as well.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
import urllib.request
from pathlib import Path

import pytest

from hil_gateway import GatewayProcess, free_port
from hil_tests.harness.browser import chromium
from hil_tests.harness.nodes import node_key
from hil_tests.harness.plant import Plant, PlantNode

DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
WAIT = 30.0  # seconds any one change may take to show (it shows within about a second; CI machines are slow)

CHAINS = """
[channels."flow-2/loop"]
unit = "m3/h"
steps = [{ type = "current_loop", lrv = 0.0, urv = 120.0 }]

[channels."furnace-1/t_s"]
steps = [{ type = "range", min = 0.0, max = 1768.0 }, { type = "ema", alpha = 0.5 }]
"""


def _plant_nodes() -> list[PlantNode]:
    return [
        PlantNode("furnace-1", "t_s", "Cel", 1412.0),
        PlantNode("flow-2", "loop", "mA", 12.0),
        PlantNode("fan-3", "vib", "m/s2", 2.5, firmware="1.4.1", reset_cause="watchdog"),
        PlantNode("ladle-4", "t", "Cel", 1280.0, key=b"\x01" * 32),  # provisioned with the wrong key
    ]


class ConsoleSite:
    """A gateway process with its console on, the plant sending to it."""

    def __init__(self, directory: Path, broker, nodes: list[PlantNode], registered: list[str],
                 chains: str = CHAINS) -> None:
        self.web_port = free_port()
        keys = {name: node_key(name) for name in registered}
        route = broker.route_table("partner-a", include=["furnace-*/*", "flow-*/*"], exclude=["*/debug*"],
                                   mqtt_version="3.1.1")
        self.gateway = GatewayProcess(directory, keys, [route],
                                      extra={"web": {"bind": "127.0.0.1", "port": self.web_port, "history": "60s"}})
        with open(self.gateway.config_path, "a") as f:
            f.write(chains)
        self.gateway.start()
        self.plant = Plant(self.gateway.address, nodes).start() if nodes else None
        self.url = f"http://127.0.0.1:{self.web_port}/"

    def api(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=5) as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        if self.plant is not None:
            self.plant.close()
        self.gateway.stop()


def wait_for(browser, condition, what: str, timeout: float = WAIT):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def safe(driver):
        try:
            return condition(driver)
        except StaleElementReferenceException:  # the page re-rendered the row under us: look again
            return False

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(safe)
    except TimeoutException:
        raise AssertionError(f"the page did not show {what} within {timeout:.0f} s") from None


_ROWS_JS = """
const rows = [];
for (const tr of document.querySelectorAll(arguments[0])) {
  const chip = tr.querySelector('.state');
  const err = tr.querySelector('.err');
  const lag = tr.querySelector('.lag');
  rows.push({name: tr.dataset.node || tr.dataset.route || tr.dataset.channel || tr.dataset.device || '',
             state: tr.dataset.state || '', quality: tr.dataset.quality || '', text: tr.innerText,
             colour: chip ? getComputedStyle(chip).color : '', error: err ? err.innerText : '',
             lag: lag ? lag.innerText : '', display: getComputedStyle(tr).display,
             labels: Array.from(tr.cells).map((td) => td.dataset.label || ''),
             cells: Object.fromEntries(Array.from(tr.cells).map((td) => [td.dataset.label || '', td.innerText]))});
}
return rows;
"""


def rows(browser, selector: str) -> dict[str, dict]:
    """The table rows the page shows now, read in one go (the page
    re-renders every second, so element handles would go stale)."""
    return {r["name"]: r for r in browser.execute_script(_ROWS_JS, selector)}


def row(browser, kind: str, name: str) -> dict | None:
    return rows(browser, f"tr[data-{kind}]").get(name)


def row_state(kind: str, name: str, state: str):
    def check(browser):
        found = row(browser, kind, name)
        return found if found is not None and found["state"] == state else False
    return check


def colour(found: dict) -> tuple[int, int, int]:
    rgba = found["colour"]  # "rgb(r, g, b)"
    return tuple(int(float(x)) for x in rgba[rgba.index("(") + 1:rgba.index(")")].split(",")[:3])


def screenshot(browser, tmp_path: Path, name: str, show: str | None = None) -> Path:
    """A PNG of the window; ``show``: the CSS selector of what must be in view."""
    if show:
        browser.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'center'})", show)
    path = tmp_path / f"{name}.png"
    browser.save_screenshot(str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300 and height >= 300
    if os.environ.get("SMEMET_DOCS_SCREENSHOTS"):
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / f"{name}.png")
    return path


@pytest.fixture
def site(tmp_path, make_broker):
    broker = make_broker()
    registered = ["furnace-1", "flow-2", "fan-3", "ladle-4", "spare-5"]
    site = ConsoleSite(tmp_path / "gateway", broker, _plant_nodes(), registered)
    site.broker = broker
    yield site
    site.close()


def test_field_engineer_sees_nodes_faults_and_routes_live(site, tmp_path):
    from selenium.webdriver.common.by import By

    with chromium(tmp_path / "browser", height=1300) as browser:
        browser.get(site.url)

        # The node list appears, live: every registered node, the sending ones ok.
        for name in ("furnace-1", "flow-2", "fan-3"):
            wait_for(browser, row_state("node", name, "ok"), f"{name} as ok")
        assert browser.find_element(By.ID, "live").get_attribute("data-live") == "live"
        furnace = wait_for(browser, lambda b: (r := row(b, "node", "furnace-1")) and "1.4.2" in r["text"] and r,
                           "furnace-1's firmware")
        assert "udp 127.0.0.1:" in furnace["text"] and "synced" in furnace["text"] and "1 h" in furnace["text"]
        assert browser.find_element(By.ID, "gw-id").text == "hil-gw"

        # Commissioning: the node with a key that never sent, and the one whose frames fail the MAC.
        wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#waiting-list li[data-node="ladle-4"]')
                 and "wrong key" in b.find_element(By.ID, "waiting-list").text, "ladle-4 waiting with a wrong key")
        waiting = browser.find_element(By.ID, "waiting-list").text
        assert "spare-5" in waiting and "waiting for first frame" in waiting
        ladle = row(browser, "node", "ladle-4")
        assert ladle["state"] == "waiting" and "wrong key" in ladle["text"]

        # The route to partner A: connected, with what it receives.
        route = wait_for(browser, row_state("route", "partner-a", "connected"), "partner-a connected")
        assert "include furnace-*/*, flow-*/*" in route["text"] and "exclude */debug*" in route["text"]
        screenshot(browser, tmp_path, "console-overview")

        # A node going silent turns amber, then red.
        site.plant.nodes["fan-3"].silent = True
        late = wait_for(browser, row_state("node", "fan-3", "late"), "fan-3 late (amber)")
        red, green, blue = colour(late)
        assert red > 120 and green > 80 and blue < 60, f"late is not amber: {(red, green, blue)}"
        silent = wait_for(browser, row_state("node", "fan-3", "silent"), "fan-3 silent (red)")
        red, green, blue = colour(silent)
        assert red > 150 and green < 80 and blue < 80, f"silent is not red: {(red, green, blue)}"
        screenshot(browser, tmp_path, "console-node-silent", show="#nodes-panel")

        # A wire break shows bad quality with its reason, on the node's page.
        site.plant.nodes["flow-2"].wire_break = True
        wait_for(browser, lambda b: "bad" in row(b, "node", "flow-2")["text"], "flow-2's readings bad in the list")
        browser.find_element(By.CSS_SELECTOR, 'tr[data-node="flow-2"] a').click()
        channel = wait_for(browser, lambda b: (r := row(b, "channel", "loop")) and r["quality"] == "bad" and r,
                           "flow-2/loop with bad quality")
        assert "wire-break" in channel["text"]
        assert "current_loop(lrv=0, urv=120)" in channel["text"]  # the processing chain it goes through
        assert browser.find_element(By.ID, "node-title").text == "flow-2"
        screenshot(browser, tmp_path, "console-node-wire-break")
        browser.get(site.url + "#/node/furnace-1")
        wait_for(browser, lambda b: len(b.execute_script(
            "const p = document.querySelector('tr[data-channel=\"t_s\"] svg.spark polyline');"
            "return p ? p.getAttribute('points').split(' ') : [];")) >= 5, "furnace-1's sparkline")
        furnace_channel = row(browser, "channel", "t_s")
        assert "Cel" in furnace_channel["text"] and "range(min=0, max=1768)" in furnace_channel["text"]
        screenshot(browser, tmp_path, "console-node")

        # The broker stops: the route shows disconnected and its lag grows; then it recovers.
        browser.get(site.url + "#/")
        wait_for(browser, row_state("route", "partner-a", "connected"), "partner-a connected")
        site.broker.stop()
        down = wait_for(browser, row_state("route", "partner-a", "disconnected"), "partner-a disconnected")
        assert down["error"]  # the last error, in words
        first = _lag(site)
        wait_for(browser, lambda b: _lag_shown(b) > max(first, 0) + 20, "partner-a's lag growing")
        assert _lag(site) > first
        screenshot(browser, tmp_path, "console-route-down", show="#routes-panel")
        site.broker.start()
        wait_for(browser, row_state("route", "partner-a", "connected"), "partner-a connected again", timeout=60)
        wait_for(browser, lambda b: _lag_shown(b) < 200, "partner-a's lag drained", timeout=60)


def _lag(site) -> int:
    route = next(r for r in site.api("/api/v1/routes")["routes"] if r["name"] == "partner-a")
    return route["lag_measurements"]


def _lag_shown(browser) -> int:
    """The lag in measurements as the page shows it."""
    found = row(browser, "route", "partner-a")
    if found is None or not found["lag"]:
        return -1
    return int(found["lag"].split(" measurements")[0].replace(",", ""))  # "1,234 measurements · 3 s"


def test_a_thousand_nodes_are_paged_and_filtered_by_the_server(tmp_path, make_broker):
    from selenium.webdriver.common.by import By

    registered = [f"node-{i:04d}" for i in range(1000)]
    site = ConsoleSite(tmp_path / "gateway", make_broker(), [PlantNode("node-0042", "t", "Cel", 21.0)], registered)
    try:
        with chromium(tmp_path / "browser") as browser:
            browser.get(site.url)
            wait_for(browser, lambda b: "of 1000" in b.find_element(By.ID, "page-info").text, "1000 nodes paged")
            assert len(browser.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")) == 50
            shown = wait_for(browser, lambda b: (r := rows(b, "#nodes tbody tr")) and len(r) == 50 and r, "a full page")
            assert {r["state"] for r in shown.values()} == {"waiting"}  # worst first: 999 still to send, 1 ok
            browser.find_element(By.ID, "page-next").click()
            wait_for(browser, lambda b: b.find_element(By.ID, "page-info").text.startswith("51–100"), "page 2")
            box = browser.find_element(By.ID, "node-filter")
            box.send_keys("node-099")
            wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#nodes tbody tr")) == 10
                     and "filtered from 1000" in b.find_element(By.ID, "page-info").text, "10 nodes matching node-099")
            assert list(rows(browser, "#nodes tbody tr")) == [f"node-{i:04d}" for i in range(990, 1000)]
            browser.find_element(By.CSS_SELECTOR, '#state-chips [data-state="ok"]').click()
            box.clear()
            box.send_keys(" ")  # clear() fires no input event; a space (trimmed) does
            wait_for(browser, lambda b: list(rows(b, "#nodes tbody tr")) == ["node-0042"],
                     "only the node that sends, filtered by state ok")
    finally:
        site.close()


def test_phone_layout_shows_every_node_as_a_card(site, tmp_path):
    with chromium(tmp_path / "browser", width=390, height=844, phone=True) as browser:
        browser.get(site.url)
        furnace = wait_for(browser, row_state("node", "furnace-1", "ok"), "furnace-1 as ok")
        assert furnace["display"] == "block"  # one card per node, not a wide table row
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390 + 1  # no sideways scroll
        assert furnace["labels"][:3] == ["Node", "Last seen", "Firmware"]
        wait_for(browser, lambda b: "1.4.2" in row(b, "node", "furnace-1")["text"], "furnace-1's firmware")
        screenshot(browser, tmp_path, "console-phone", show='tr[data-node="fan-3"]')


def test_demo_prints_the_console_url_and_the_page_shows_its_three_nodes_live(tmp_path):
    """``smemet demo``: real firmware in MicroPython VMs, the embedded broker, the gateway with its console."""
    import re
    import subprocess
    import sys
    import threading

    port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "smemet", "demo", "--duration", "90", "--web-port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None:
            assert time.monotonic() < deadline and demo.poll() is None, "".join(output)
            found = re.search(r"web console: (http://127\.0\.0\.1:\d+/)", "".join(output))
            url = found.group(1) if found else None
            time.sleep(0.2)
        assert url == f"http://127.0.0.1:{port}/"
        names = ("furnace-1", "flowloop-2", "millfan-3")
        with chromium(tmp_path / "browser", height=1100) as browser:
            browser.get(url)
            for name in names:
                wait_for(browser, row_state("node", name, "ok"), f"demo node {name} as ok", timeout=60)
            wait_for(browser, lambda b: (r := rows(b, "#nodes tbody tr")) and all(
                r[n]["cells"]["Firmware"] not in ("", "—") for n in names), "the demo nodes' firmware", timeout=60)
            browser.get(url + "#/node/furnace-1")
            values = wait_for(browser, lambda b: (r := rows(b, "#channels tbody tr")) and len(r) >= 2 and r,
                              "furnace-1's channels")
            time.sleep(3)
            later = rows(browser, "#channels tbody tr")
            assert any(later[c]["text"] != values[c]["text"] for c in values if c in later), "values are not live"
            browser.get(url)
            wait_for(browser, row_state("node", "furnace-1", "ok"), "the overview again")
            screenshot(browser, tmp_path, "console-demo")
    finally:
        demo.send_signal(2)  # Ctrl-C: the demo stops its nodes and says what it delivered
        demo.wait(60)
        reader.join(10)
        demo.stdout.close()
    assert demo.returncode == 0, "".join(output)
    assert re.search(r"demo: 3 nodes, \d+ measurements delivered, 0 lost", "".join(output))


def test_a_channel_shows_the_calibration_record_behind_its_value_and_its_due_date(tmp_path, make_broker):
    """A record added with ``smemet calibration add`` while the console is
    open: the oven's channel shows the corrected value, the record's id and
    that it is due soon, under its chain; the record of an overdue sensor
    shows in red (docs/processing.md)."""
    import datetime as dt
    import subprocess
    import sys

    broker = make_broker()
    chains = CHAINS + '\n[channels."oven-*/*"]\nsteps = [{ type = "calibration" }]\n'
    nodes = [PlantNode("oven-5", "tc", "Cel", 850.0), PlantNode("oven-6", "tc", "Cel", 850.0)]
    site = ConsoleSite(tmp_path / "gateway", broker, nodes, ["oven-5", "oven-6"], chains=chains)
    outbox = site.gateway.directory / "outbox.db"
    try:
        today = dt.date.today()
        for node, certificate, due, offset in (("oven-5", "OV-5-2026", today + dt.timedelta(days=9), 400.0),
                                               ("oven-6", "OV-6-2025", today - dt.timedelta(days=2), 0.0)):
            added = subprocess.run(
                [sys.executable, "-m", "smemet", "calibration", "add", f"{node}/tc", "--certificate", certificate,
                 "--lab", "Lab", "--date", (today - dt.timedelta(days=300)).isoformat(), "--due", due.isoformat(),
                 "--offset", str(offset), "--uncertainty", "1.0", "--outbox", str(outbox)],
                capture_output=True, text=True, timeout=60)
            assert added.returncode == 0, added.stderr
        with chromium(tmp_path / "browser", height=1000) as browser:
            browser.get(site.url + "#/node/oven-5")
            found = wait_for(browser, lambda b: (r := row(b, "channel", "tc")) and "OV-5-2026" in r["text"] and r,
                             "oven-5/tc naming its calibration record")
            processing = found["cells"]["Processing"]
            assert "calibration OV-5-2026" in processing and "due in 9 d" in processing
            assert not found["error"]  # due soon is a notice, not an alarm
            value = float(found["cells"]["Value"].split()[0].replace(",", ""))
            assert 1240.0 < value < 1260.0  # 850 ± 1 % + the 400 °C offset: the corrected value
            browser.get(site.url + "#/node/oven-6")
            overdue = wait_for(browser, lambda b: (r := row(b, "channel", "tc")) and r["error"]
                               and r["quality"] == "uncertain" and r, "oven-6/tc's overdue calibration in red")
            assert "calibration OV-6-2025" in overdue["error"]  # readings from its valid-from on name it...
            assert "calibration overdue since" in overdue["error"] and "calibration-due" in overdue["text"]  # ...and are doubted
            screenshot(browser, tmp_path, "console-calibration")
    finally:
        site.close()

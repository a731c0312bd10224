"""``smemet agreements``, ``smemet ledger``, ``smemet verify`` and
``smemet gateway signing-key show`` on user mistakes: one clear line on
stderr, exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil_tests.harness.nodes import write_config
from smemet.fieldtest import smemet

ROUTE = """
[[routes]]
name = "institute"
broker = "mqtt://127.0.0.1:1883"
topic_prefix = "plant1/institute"

[routes.agreement]
id = "IMT-2026-07"
version = 3
parties = [{ name = "Stahlwerk Nord GmbH", role = "provider" }, { name = "Institut für Metallurgie", role = "recipient" }]
purpose = "Research on ladle heat losses"
include = ["furnace-*/tc*"]
resolution = { period = "1m", aggregates = ["mean", "max"] }
delay = "1h"
validity = { from = 2026-03-01T00:00:00Z, until = 2099-09-01T00:00:00Z }
pseudonyms = { "furnace-1" = "site-A", "furnace-2" = "site-B" }
fields = ["unit"]

[[routes]]
name = "historian"
broker = "mqtt://127.0.0.1:1883"
include = ["*"]
"""


@pytest.fixture
def config(tmp_path):
    return write_config(str(tmp_path), ["furnace-1"], extra=ROUTE)


def one_line_error(result, starts: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), result.stderr
    return lines[0]


def test_agreements_as_a_partner_reads_them(config):
    listing = smemet("agreements", "list", "--config", config)
    assert listing.returncode == 0, listing.stderr
    assert "institute  IMT-2026-07 v3" in listing.stdout and "in force until 2099-09-01T00:00:00Z" in listing.stdout
    assert "historian  -" in listing.stdout and "no agreement" in listing.stdout
    shown = smemet("agreements", "show", "institute", "--config", config)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    for expected in ("Agreement IMT-2026-07, version 3", "Stahlwerk Nord GmbH (provider)",
                     "channels:    site-A/tc*, site-B/tc*", "node names:  aliases only: site-A, site-B",
                     "aggregates over 1 min periods: mean, max", "delay:       1 h",
                     "from 2026-03-01T00:00:00Z until 2099-09-01T00:00:00Z",
                     "not shared: quality reasons, node diagnostics"):
        assert expected in text, text
    assert "furnace" not in text, "the partner's view shows aliases only"
    internal = smemet("agreements", "show", "institute", "--config", config, "--internal")
    assert "furnace-1 -> site-A" in internal.stdout and "furnace-*/tc*" in internal.stdout


def test_agreements_mistakes(config, tmp_path):
    one_line_error(smemet("agreements", "show", "nowhere", "--config", config),
                   "smemet agreements show: error: no route 'nowhere' in")
    one_line_error(smemet("agreements", "show", "historian", "--config", config),
                   "smemet agreements show: error: route historian has no agreement")
    broken = tmp_path / "broken.toml"
    broken.write_text(Path(config).read_text().replace('version = 3', 'version = "three"'))
    line = one_line_error(smemet("agreements", "list", "--config", str(broken)), "smemet agreements list: error: bad gateway config")
    assert "routes[0].agreement.version: must be an integer" in line


def test_ledger_and_signing_key_before_the_first_start(config):
    one_line_error(smemet("ledger", "institute", "--config", config), "smemet ledger: error: ")
    line = one_line_error(smemet("gateway", "signing-key", "show", "--config", config), "smemet gateway signing-key show: error:")
    assert "no signing key yet" in line and "first start" in line
    one_line_error(smemet("ledger", "institute", "--config", config, "--from", "yesterday"),
                   "smemet ledger: error: --from 'yesterday': give a time such as")


def test_verify_mistakes(tmp_path):
    capture = tmp_path / "capture.txt"
    capture.write_text("plant1/institute/site-A/tc1 7b7d\nnot a message line at all\n")
    one_line_error(smemet("verify", "--capture", str(capture)),
                   f"smemet verify: error: {capture}:2: not a captured message")
    one_line_error(smemet("verify", "--capture", str(tmp_path / "none.txt")), "smemet verify: error: --capture")
    one_line_error(smemet("verify", "--capture", str(capture), "--fingerprint", "abc"),
                   "smemet verify: error: --fingerprint: a fingerprint is 64 hex digits")
    one_line_error(smemet("verify", "--broker", "mqtt://127.0.0.1:1"), "smemet verify: error: --broker needs --topic")
    empty = tmp_path / "empty.txt"
    empty.write_text("plant1/institute/site-A/tc1 7b7d\n")
    result = smemet("verify", "--capture", str(empty))
    assert result.returncode == 1 and "holds no gateway-key message" in result.stdout

"""The agreement table of a route, the [ledger] section and the signing key
file: every mistake one line naming the key path; what the terms mean."""

from __future__ import annotations

import os
import stat

import pytest

from smemet.gateway.agreements import parse_agreement
from smemet.gateway.config import parse_config
from smemet.gateway.errors import ConfigError, GatewayError
from smemet.gateway.ledger import signing
from smemet.gateway.sinks.mqtt import parse_routes

PARTIES = [{"name": "Stahlwerk Nord", "role": "provider"}, {"name": "IMT", "role": "recipient"}]
BASE = {"id": "IMT-7", "version": 1, "parties": PARTIES, "purpose": "heat losses", "include": ["furnace-*/tc*"]}


def route(**agreement):
    return {"name": "imt", "broker": "mqtt://127.0.0.1:1883", "agreement": dict(BASE, **agreement)}


def error(table) -> str:
    with pytest.raises(ConfigError) as info:
        parse_routes([table], "gw.toml")
    return str(info.value)


@pytest.mark.parametrize("change, where, says", [
    ({"version": 0}, "routes[0].agreement.version", "must be an integer of at least 1"),
    ({"id": "has space"}, "routes[0].agreement.id", "is not a valid agreement id"),
    ({"parties": [PARTIES[0]]}, "routes[0].agreement.parties", "at least two"),
    ({"parties": [PARTIES[0], {"name": "IMT"}]}, "routes[0].agreement.parties[1].role", "is missing"),
    ({"resolution": "1m"}, "routes[0].agreement.resolution", '"raw" or a table'),
    ({"resolution": {"period": "0.5s"}}, "routes[0].agreement.resolution.period", "out of range"),
    ({"resolution": {"period": "1m", "aggregates": ["median"]}}, "routes[0].agreement.resolution.aggregates",
     "'median' is not an aggregate"),
    ({"delay": "soon"}, "routes[0].agreement.delay", "a duration such as 30s"),
    ({"validity": {"from": "2026-03-01T00:00:00"}}, "routes[0].agreement.validity.from", "has no time zone"),
    ({"validity": {"from": "2026-04-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}},
     "routes[0].agreement.validity.until", "is not after from"),
    ({"validity": {}}, "routes[0].agreement.validity", "is empty"),
    ({"pseudonyms": {"furnace-1": "site A"}}, 'routes[0].agreement.pseudonyms."furnace-1"', "not a valid alias"),
    ({"pseudonyms": {"furnace-1": "site-A", "furnace-2": "site-A"}}, 'routes[0].agreement.pseudonyms."furnace-2"',
     "already the alias of 'furnace-1'"),
    ({"fields": ["unit", "location"]}, "routes[0].agreement.fields", "'location' is not a field"),
    ({"include": []}, "routes[0].agreement.include", "is empty"),
    ({"terms": "all"}, "routes[0].agreement.terms", "unknown key; valid keys are id, version, parties"),
])
def test_mistakes_are_one_line_naming_the_key(change, where, says):
    message = error(route(**change))
    assert message.startswith(f"gw.toml: {where}: ") and says in message, message
    assert "\n" not in message


def test_channels_belong_to_the_agreement_not_beside_it():
    table = route()
    table["include"] = ["*"]
    assert "routes[0].include: is set beside an agreement" in error(table)
    assert "routes[0].agreement.include" in error(table)


def test_the_agreement_fills_the_route_selection():
    (r,) = parse_routes([route(exclude=["furnace-9/*"], fields=["status", "unit"])], "gw.toml")
    assert (r.include, r.exclude, r.kinds) == (("furnace-*/tc*",), ("furnace-9/*",), ("data", "status"))
    a = r.agreement
    assert (a.id, a.version, a.resolution.raw, a.delay, a.fields) == ("IMT-7", 1, True, 0.0, ("status", "unit"))


def test_toml_datetimes_dates_and_state():
    import datetime

    a = parse_agreement(dict(BASE, validity={"from": datetime.date(2026, 3, 1),
                                             "until": datetime.datetime(2026, 4, 1, 1, tzinfo=datetime.timezone(
                                                 datetime.timedelta(hours=1)))}, delay="1h"), "w")
    assert (a.valid_from, a.valid_until) == (1772323200.0, 1775001600.0)
    assert a.state(a.valid_from - 1) == (False, "not in force before 2026-03-01T00:00:00Z")
    assert a.state(a.valid_from) == (True, "in force until 2026-04-01T00:00:00Z")
    assert a.state(a.valid_until + 1800)[0], "embargoed readings of the campaign still go out"
    assert a.state(a.valid_until + 3600) == (False, "expired: valid until 2026-04-01T00:00:00Z (+ its 1 h delay)")


def test_every_term_is_part_of_the_version():
    base = parse_agreement(BASE, "w")
    for change in ({"purpose": "other"}, {"delay": "1s"}, {"fields": ["unit"]}, {"pseudonyms": {"a": "b"}},
                   {"resolution": {"period": "1m"}}, {"parties": [PARTIES[1], PARTIES[0]]}):
        assert parse_agreement(dict(BASE, **change), "w").digest() != base.digest(), change
    assert parse_agreement(dict(BASE), "w").digest() == base.digest()


def test_ledger_section(tmp_path):
    doc = {"keys": {"file": "keys.toml"}, "outbox": {"path": "state/outbox.sqlite"},
           "ledger": {"retention": "90d", "checkpoint_interval": "2s", "max_bytes": "1GiB"}}
    config = parse_config(doc, str(tmp_path / "gateway.toml"))
    assert (config.ledger.retention, config.ledger.checkpoint_interval) == (90 * 86400.0, 2.0)
    assert config.ledger.max_bytes == 2**30
    assert config.ledger.key_path(config.outbox.path) == str(tmp_path / "state" / "signing.key")
    assert config.ledger.db_path(config.outbox.path) == str(tmp_path / "state" / "ledger.sqlite")
    doc["ledger"] = {"signing_key": "keys/gw.key"}
    assert parse_config(doc, str(tmp_path / "gateway.toml")).ledger.signing_key == str(tmp_path / "keys" / "gw.key")
    doc["ledger"] = {"checkpoint_interval": "10m"}
    with pytest.raises(ConfigError, match=r"gateway.toml: ledger.checkpoint_interval: .* out of range"):
        parse_config(doc, str(tmp_path / "gateway.toml"))
    doc["ledger"] = {"retension": "1d"}
    with pytest.raises(ConfigError, match=r"ledger.retension: unknown key"):
        parse_config(doc, str(tmp_path / "gateway.toml"))


def test_signing_key_made_once_private_and_checked(tmp_path):
    path = str(tmp_path / "signing.key")
    key = signing.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = signing.load_or_create(path)
    assert again.public == key.public and len(key.public) == 32, "made once, then reused"
    assert signing.normalise_fingerprint(key.fingerprint) == signing.normalise_fingerprint(
        "SHA256:" + key.fingerprint.replace(" ", ":").upper())
    assert signing.public_from_cose_key(signing.cose_key(key.public)) == key.public
    os.chmod(path, 0o644)
    with pytest.raises(GatewayError, match=r"readable by others \(mode 0644\); fix with `chmod 600"):
        signing.load(path)
    os.chmod(path, 0o600)
    with open(path, "w") as f:
        f.write("not a key")
    with pytest.raises(GatewayError, match="not an unencrypted PEM private key"):
        signing.load(path)
    with pytest.raises(GatewayError, match="directory .* does not exist"):
        signing.load_or_create(str(tmp_path / "missing" / "signing.key"))
    with pytest.raises(GatewayError, match="no signing key yet"):
        signing.load(str(tmp_path / "other.key"))


def test_the_documented_agreement_route_is_valid():
    import pathlib
    import tomllib

    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "gateway.toml").read_text()
    start = text.index('# [[routes]]\n# name = "institute"')
    block = "\n".join(line[2:] if line.startswith("# ") else "" for line in text[start:].splitlines())
    table = tomllib.loads(block)["routes"][0]
    table.pop("password_file")
    table.pop("username")
    (r,) = parse_routes([table], "docs/gateway.toml")
    a = r.agreement
    assert (a.id, a.version, a.resolution.period, a.delay, len(a.pseudonyms)) == ("IMT-2026-07", 2, 60.0, 3600.0, 2)

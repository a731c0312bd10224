"""Partner isolation on a TLS broker with passwords and per-partner ACLs:
each route receives exactly the channels its agreement selects, and one
partner's credentials cannot read another partner's topics."""

from __future__ import annotations

import fnmatch
import time

from hil_ledger import parse_messages

from smemet import scenarios

SMELTER = ["*/tc_*"]  # partner A: the research institute gets the temperatures
CITY = ["*/flow"]  # partner B: the municipal office gets the cooling-water flow


def _selects(patterns):
    return lambda node, channel: any(fnmatch.fnmatchcase(f"{node}/{channel}", p) for p in patterns)


def test_each_partner_gets_exactly_its_channels_and_nothing_else(bench, make_broker, tmp_path):
    users = {"gateway": "gw-secret", "institute": "inst-secret", "city": "city-secret"}
    acl = {
        "gateway": ["readwrite hil/#"],
        "institute": ["read hil/institute/#"],
        "city": ["read hil/city/#"],
    }
    broker = make_broker(users=users, acl=acl, tls=True)
    ca = str(broker.tls_files.ca)
    pw = tmp_path / "gw.password"
    pw.write_text("gw-secret\n")
    pw.chmod(0o600)

    def route(name, include):
        return {"name": name, "broker": broker.url, "topic_prefix": f"hil/{name}", "include": include,
                "username": "gateway", "password_file": str(pw), "tls": {"ca": ca}, "client_id": f"gw-{name}"}

    institute = broker.subscriber("hil/#", username="institute", password="inst-secret").start()
    city = broker.subscriber("hil/#", username="city", password="city-secret").start()
    # a partner trying to read the other's topic explicitly
    snoop = broker.subscriber("hil/city/#", username="institute", password="inst-secret").start()
    wrong = broker.subscriber("hil/#", username="city", password="guess")
    try:
        wrong.start(timeout=3)
    except TimeoutError:
        pass
    finally:
        wrong.stop()
    assert wrong.connect_error, "a wrong password must be refused by the broker"

    furnace = scenarios.combine("furnace+water", scenarios.furnace_heatup(period_ms=250), scenarios.wire_break(period_ms=250))
    bench.add_node("eaf-3", furnace, time_scale=6.0)
    bench.start_gateway([route("institute", SMELTER), route("city", CITY)])
    bench.power_on()
    time.sleep(8)

    a = bench.check(institute, selects=_selects(SMELTER))
    b = bench.check(city, selects=_selects(CITY), drain=False)
    assert a.produced > 0 and b.produced > 0
    channels_a = {d["channel"] for d in parse_messages(institute.snapshot())}
    channels_b = {d["channel"] for d in parse_messages(city.snapshot())}
    assert channels_a == {"tc_s", "tc_s.cj", "tc_b", "tc_b.cj"}
    assert channels_b == {"flow"}
    assert all(m.topic.startswith("hil/institute/") for m in institute.snapshot())
    assert all(m.topic.startswith("hil/city/") for m in city.snapshot())
    assert snoop.count() == 0, "the institute's credentials read the city's topics"
    for s in (institute, city, snoop):
        s.stop()

"""parse_routes: valid tables become RouteConfig; every mistake is one
ConfigError naming the key and saying what is valid."""

from __future__ import annotations

import pytest

from smemet.gateway.errors import ConfigError
from smemet.gateway.sinks.mqtt import parse_routes
from hil_tests.harness.broker import make_pki

BASE = {"name": "partner-a", "broker": "mqtt://broker.example:1883", "include": ["*"]}


def one(**changes):
    table = {**BASE, **changes}
    table = {k: v for k, v in table.items() if v is not None}
    return parse_routes([table], "gateway.toml")[0]


def error(**changes) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        one(**changes)
    return info.value


def test_defaults():
    route = one()
    assert (route.host, route.port, route.tls) == ("broker.example", 1883, None)
    assert route.format == "json" and route.kinds == ("data",) and route.mqtt_version == "auto"
    assert route.topic_prefix == "smemet" and route.status_topic == "smemet/status"
    assert route.client_id.endswith("-partner-a") and route.gateway_id
    assert route.message_expiry is None and route.max_in_flight == 100


def test_full_table(tmp_path):
    pki = make_pki(tmp_path)
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    route = one(
        broker="mqtts://[::1]", username="gw", password_file=str(secret), topic_prefix="plant1/a",
        tls={"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)},
        include=["furnace-*/tc*"], exclude=["furnace-9/*"], format="senml", kinds=["data", "status"],
        mqtt_version=5, message_expiry=600, client_id="gw-a", keepalive=15, max_in_flight=50,
        gateway_id="gw-1",
    )
    assert (route.host, route.port) == ("::1", 8883) and route.url == "mqtts://[::1]:8883"
    assert route.password == "hunter2" and "hunter2" not in repr(route)
    assert route.tls.cert == str(pki.client_cert) and route.mqtt_version == "5"
    assert route.include == ("furnace-*/tc*",) and route.exclude == ("furnace-9/*",)
    assert (route.format, route.kinds, route.message_expiry) == ("senml", ("data", "status"), 600)


@pytest.mark.parametrize(
    ("changes", "where", "says"),
    [
        ({"broker": "http://x"}, "routes[0].broker", "mqtt://host:port"),
        ({"broker": "mqtt://"}, "routes[0].broker", "no host"),
        ({"broker": "mqtt://u:p@x"}, "routes[0].broker", "password_file"),
        ({"broker": "mqtt://x:99999"}, "routes[0].broker", "not a valid URL"),
        ({"broker": None}, "routes[0].broker", "is missing"),
        ({"name": "a b"}, "routes[0].name", "letters, digits"),
        ({"include": None}, "routes[0].include", "[\"*\"] for everything"),
        ({"include": []}, "routes[0].include", "deliver nothing"),
        ({"include": "n1/*"}, "routes[0].include", "array of node/channel patterns"),
        ({"format": "xml"}, "routes[0].format", "one of 'json', 'senml', not 'xml'"),
        ({"kinds": ["alarm"]}, "routes[0].kinds", "\"data\" and/or \"status\""),
        ({"mqtt_version": "4"}, "routes[0].mqtt_version", "\"auto\", \"5\" or \"3.1.1\""),
        ({"mqtt_version": "3.1.1", "message_expiry": 60}, "routes[0].message_expiry", "needs MQTT 5"),
        ({"message_expiry": -1}, "routes[0].message_expiry", "0 (never expires)"),
        ({"keepalive": 1}, "routes[0].keepalive", "integer 5..65535"),
        ({"max_in_flight": 0}, "routes[0].max_in_flight", "integer 1..65535"),
        ({"max_in_flight": "10"}, "routes[0].max_in_flight", "must be an integer"),
        ({"topic_prefix": "a/#"}, "routes[0].topic_prefix", "without wildcards"),
        ({"topic_prefix": "a/"}, "routes[0].topic_prefix", "empty levels"),
        ({"topic_prefix": "$SYS"}, "routes[0].topic_prefix", "leading $"),
        ({"password": "x"}, "routes[0].username", "needs a username"),
        ({"username": "u", "password": "x", "password_file": "/x"}, "routes[0].password", "not both"),
        ({"password_file": "/nonexistent/pw", "username": "u"}, "routes[0].password_file", "does not exist"),
        ({"tls": {"ca": "/x"}}, "routes[0].tls", "use mqtts://"),
        ({"colour": "red"}, "routes[0].colour", "valid keys are name, broker"),
    ],
)
def test_mistakes_name_the_key(changes, where, says):
    exc = error(**changes)
    assert exc.where == f"gateway.toml: {where}"
    assert says in exc.message
    assert "\n" not in str(exc)


def test_secret_files_must_be_owner_only(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("x")
    secret.chmod(0o644)
    exc = error(username="u", password_file=str(secret))
    assert "chmod 600" in exc.message


def test_tls_files_are_loaded_at_start(tmp_path):
    pki = make_pki(tmp_path)
    exc = error(broker="mqtts://x", tls={"ca": str(pki.ca), "cert": str(pki.client_cert)})
    assert "both cert and key" in exc.message
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    exc = error(broker="mqtts://x", tls={"ca": str(bogus)})
    assert exc.where == "gateway.toml: routes[0].tls" and "cannot load the TLS files" in exc.message
    other = make_pki(tmp_path / "other")  # a key that does not belong to the certificate
    exc = error(broker="mqtts://x", tls={"cert": str(pki.client_cert), "key": str(other.client_key)})
    assert "cannot load the TLS files" in exc.message


def test_duplicate_names_and_client_ids():
    with pytest.raises(ConfigError, match=r"routes\[1\]\.name: 'partner-a' is already"):
        parse_routes([BASE, BASE], "gateway.toml")
    with pytest.raises(ConfigError, match=r"routes\[1\]\.client_id"):
        parse_routes([{**BASE, "client_id": "c"}, {**BASE, "name": "b", "client_id": "c"}], "gateway.toml")


def test_not_a_list_or_not_tables():
    with pytest.raises(ConfigError, match="array of tables"):
        parse_routes({"name": "x"}, "gateway.toml")
    with pytest.raises(ConfigError, match=r"routes\[0\]: must be a table"):
        parse_routes(["x"], "gateway.toml")

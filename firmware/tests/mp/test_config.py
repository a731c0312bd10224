"""config.json validation: every problem reported as one clear line."""

import json

from node import config

KEY = "00" * 32


def base():
    return {"node_id": "n1", "key": KEY, "board": "sim", "transport": {"type": "udp", "gateway": "127.0.0.1"},
            "channels": [{"name": "t", "driver": "max31855", "cs": 5}]}


def problems(cfg):
    try:
        config.validate(cfg)
    except config.ConfigError as exc:
        return exc.problems
    return []


def test_valid_config_gets_defaults():
    cfg = config.validate(base())
    assert cfg["transport"]["port"] == 47000 and cfg["transport"]["window"] == 1
    assert cfg["batch"]["max_records"] == 16 and cfg["store"]["full_policy"] == "drop-oldest"
    assert cfg["channels"][0]["period_ms"] == 1000 and cfg["_key"] == bytes(32)


def test_unknown_driver_lists_known_ones():
    cfg = base()
    cfg["channels"].append({"name": "x", "driver": "max3185"})
    p = problems(cfg)
    assert len(p) == 1 and p[0].startswith("config.json: channels[1].driver: unknown driver 'max3185', known: ")
    assert "max31856" in p[0] and "modbus_rtu" in p[0] and "health" not in p[0], p


def test_every_problem_is_reported():
    cfg = base()
    cfg["key"] = "zz"
    cfg["transport"]["window"] = 9
    cfg["channels"][0]["cs"] = "five"
    cfg["channels"].append({"name": "t", "driver": "max31856", "tc_type": "Q"})
    p = problems(cfg)
    text = "\n".join(p)
    for needle in ("key:", "transport.window: 9 is outside 1..8", "channels[0].cs: 'five' is not an int",
                   "channels[1].name: 't' is used by another channel", "channels[1].tc_type: 'Q' is not one of"):
        assert needle in text, (needle, p)
    for line in p:
        assert "\n" not in line and line.startswith("config.json: ")


def test_driver_specific_checks():
    cfg = base()
    cfg["channels"] = [{"name": "m", "driver": "modbus_rtu", "registers": [{"name": "a", "address": 1, "type": "float64"}]},
                       {"name": "l", "driver": "ads1115", "lrv": 5, "urv": 5}]
    text = "\n".join(problems(cfg))
    assert "channels[0].registers[0].type: 'float64' is not one of" in text, text
    assert "channels[1].urv: must differ from lrv" in text, text


def test_missing_and_bad_json_files():
    try:
        config.load("no-such-config.json")
        assert False
    except config.ConfigError as exc:
        assert "not found" in exc.problems[0]
    with open("bad.json", "w") as f:
        f.write("{not json")
    try:
        config.load("bad.json")
        assert False
    except config.ConfigError as exc:
        assert exc.problems[0].startswith("bad.json: not valid JSON")


def test_remote_update_needs_newer_version_and_stays_valid():
    cfg = config.validate(base())
    new = config.apply_update(cfg, 2, {"batch.max_records": 8, "channels.t.period_ms": 250})
    assert new["cfg_ver"] == 2 and new["batch"]["max_records"] == 8 and new["channels"][0]["period_ms"] == 250
    assert cfg["batch"]["max_records"] == 16  # the running config is untouched
    for version, settings in ((0, {"batch.max_records": 8}), (3, {"batch.max_records": 99}), (3, {"key": "00"})):
        try:
            config.apply_update(cfg, version, settings)
            assert False, (version, settings)
        except config.ConfigError:
            pass
    config.save(new, "saved.json")
    assert json.load(open("saved.json"))["cfg_ver"] == 2 and "_key" not in json.load(open("saved.json"))


def _write(path, data):
    with open(path, "w") as f:
        f.write(json.dumps(data))


def test_update_saved_by_the_running_node_is_applied_at_boot():
    from node import fsutil

    _write("config.json", base())
    _write(config.UPDATE_PATH, {"version": 4, "settings": {"batch.max_records": 6, "channels.t.period_ms": 300}})
    cfg = config.load()
    assert cfg["cfg_ver"] == 4 and cfg["batch"]["max_records"] == 6 and cfg["channels"][0]["period_ms"] == 300
    assert not fsutil.exists(config.UPDATE_PATH), "an applied update is consumed"
    saved = json.load(open("config.json"))
    assert saved["cfg_ver"] == 4 and saved["batch"]["max_records"] == 6
    # applied again (power cut before the update file went): refused as not newer, consumed
    _write(config.UPDATE_PATH, {"version": 4, "settings": {"batch.max_records": 7}})
    assert config.load()["batch"]["max_records"] == 6 and not fsutil.exists(config.UPDATE_PATH)


def test_invalid_or_damaged_update_keeps_the_config():
    from node import fsutil

    _write("config.json", base())
    _write(config.UPDATE_PATH, {"version": 5, "settings": {"batch.max_records": 999}})
    cfg = config.load()
    assert cfg["cfg_ver"] == 0 and cfg["batch"]["max_records"] == 16 and not fsutil.exists(config.UPDATE_PATH)
    with open(config.UPDATE_PATH, "w") as f:
        f.write('{"version": 5, "sett')  # torn
    assert config.load()["cfg_ver"] == 0 and not fsutil.exists(config.UPDATE_PATH)
    assert json.load(open("config.json")).get("cfg_ver", 0) == 0

"""config.json: load, validate, and apply updates from the gateway.

Validation collects every problem as one line ``config.json: <where>: <what>``
so a field engineer can fix them all in one go; the node then stays idle and
reachable instead of crash-looping.  Each driver declares its own settings
(``SETTINGS``) and may add checks (``validate``): the core knows no driver.
"""

import os
import json
import binascii

from node import fsutil

PATH = "config.json"
UPDATE_PATH = "config.update"  # a gateway update waiting for the next boot
REQUIRED = object()
BOARDS = ("sim", "esp32_devkit", "rpi_pico")
TRANSPORTS = ("udp", "serial")
DEFAULT_PORT = 47000

# Top-level sections: (key, kind, default, (min, max) or choices)
_TRANSPORT_UDP = (
    ("gateway", "str", REQUIRED, None),
    ("port", "int", DEFAULT_PORT, (1, 65535)),
    ("window", "int", 1, (1, 8)),
    ("ack_timeout_ms", "int", 1000, (50, 60000)),
    ("backoff_max_ms", "int", 30000, (100, 3600000)),
)
_TRANSPORT_SERIAL = (
    ("device", "str", None, None),  # sim board: a PTY or tty path
    ("uart", "int", 1, (0, 9)),  # boards: machine.UART id
    ("baudrate", "int", 115200, (1200, 3000000)),
    ("de_pin", "int", None, (0, 64)),  # RS-485 driver enable, if any
    ("window", "int", 1, (1, 8)),
    ("ack_timeout_ms", "int", 1000, (50, 60000)),
    ("backoff_max_ms", "int", 30000, (100, 3600000)),
)
_BATCH = (
    ("max_records", "int", 16, (1, 24)),
    ("max_latency_ms", "int", 5000, (0, 3600000)),
)
_STORE = (
    ("max_kib", "int", 64, (4, 65536)),
    ("segment_kib", "int", 4, (2, 64)),
    ("full_policy", "str", "drop-oldest", ("drop-oldest", "stop")),
)
_HEALTH = (("period_s", "int", 60, (1, 86400)),)
_SIM = (
    ("scenario", "str", "sim.json", None),
    ("time_scale", "float", 1.0, (0.001, 100000.0)),
)
_CHANNEL = (
    ("name", "str", REQUIRED, None),
    ("driver", "str", REQUIRED, None),
    ("period_ms", "int", 1000, (10, 86400000)),
)
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class ConfigError(Exception):
    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def _kind_ok(kind, value):
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    if kind == "dict":
        return isinstance(value, dict)
    return True


def check_fields(section, schema, where, problems, allow_extra=False):
    """Fill defaults into ``section`` and report wrong or missing fields."""
    known = []
    for key, kind, default, limits in schema:
        known.append(key)
        if key not in section or section[key] is None:
            if default is REQUIRED:
                problems.append("%s.%s: missing (required)" % (where, key))
            else:
                section[key] = default
            continue
        value = section[key]
        if not _kind_ok(kind, value):
            problems.append("%s.%s: %r is not a%s %s" % (where, key, value, "n" if kind == "int" else "", kind))
            continue
        if isinstance(limits, tuple) and len(limits) == 2 and not isinstance(limits[0], str):
            if not limits[0] <= value <= limits[1]:
                problems.append("%s.%s: %r is outside %r..%r" % (where, key, value, limits[0], limits[1]))
        elif limits and value not in limits:
            problems.append("%s.%s: %r is not one of %s" % (where, key, value, ", ".join(limits)))
    if not allow_extra:
        for key in section:
            if key not in known:
                problems.append("%s.%s: unknown setting (known: %s)" % (where, key, ", ".join(known)))


def known_drivers():
    import drivers

    names = []
    base = drivers.__path__ if isinstance(drivers.__path__, str) else drivers.__path__[0]
    for name in os.listdir(base):
        folder = base + "/" + name + "/__init__."
        if name[0] not in "._" and (fsutil.exists(folder + "py") or fsutil.exists(folder + "mpy")):
            names.append(name)
    names.sort()
    return names


def load_driver(name):
    """What declares the settings of the driver named in config.json:
    ``drivers/<name>/schema.py`` when the driver has one (it is unloaded
    with this module after boot, so settings and checks take no heap while
    the node runs), else the driver module itself."""
    driver = __import__("drivers." + name, None, None, ("NAME",))
    base = driver.__file__.rsplit("/", 1)[0] + "/schema."
    if fsutil.exists(base + "py") or fsutil.exists(base + "mpy"):
        return __import__("drivers.%s.schema" % name, None, None, ("NAME",))
    return driver


def unload():
    """Drop this module and the drivers' schema modules from the heap (the
    running node needs neither)."""
    import sys

    for name in list(sys.modules):
        if name == "node.config" or name.endswith(".schema"):
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and hasattr(sys.modules[parent], child):
                delattr(sys.modules[parent], child)


def _section(config, key, schema, where, problems):
    section = config.get(key)
    if section is None:
        section = config[key] = {}
    if not isinstance(section, dict):
        problems.append("%s.%s: must be an object" % (where, key))
        config[key] = section = {}
    check_fields(section, schema, where + "." + key, problems)
    return section


def validate(config, where="config.json"):
    """Check and complete a parsed config in place; raise ConfigError."""
    problems = []
    if not isinstance(config, dict):
        raise ConfigError(["%s: must be a JSON object" % where])
    node_id = config.get("node_id")
    if not isinstance(node_id, str) or not 1 <= len(node_id) <= 32:
        problems.append("%s: node_id: missing or not 1..32 characters of text" % where)
    key = config.get("key")
    try:
        if not isinstance(key, str) or len(key) < 32:
            raise ValueError
        config["_key"] = binascii.unhexlify(key)
    except ValueError:
        problems.append("%s: key: missing or not hex of at least 16 bytes (as 'smemet node add' prints)" % where)
    board = config.setdefault("board", "sim")
    if board not in BOARDS:
        problems.append("%s: board: unknown board %r, known: %s" % (where, board, ", ".join(BOARDS)))
    for name, kind, lo, hi, default in (
        ("cfg_ver", "int", 0, 1 << 31, 0),
        ("safe_mode_after", "int", 1, 100, 3),
        ("watchdog_ms", "int", 0, 3600000, 8000),
        ("stable_after_s", "int", 1, 86400, 30),
    ):
        value = config.setdefault(name, default)
        if not _kind_ok(kind, value) or not lo <= value <= hi:
            problems.append("%s: %s: %r is not an integer in %d..%d" % (where, name, value, lo, hi))
    transport = config.get("transport")
    if not isinstance(transport, dict):
        problems.append("%s: transport: missing (an object with type udp or serial)" % where)
    else:
        kind = transport.get("type")
        if kind not in TRANSPORTS:
            problems.append("%s: transport.type: %r is not one of udp, serial" % (where, kind))
        else:
            schema = _TRANSPORT_UDP if kind == "udp" else _TRANSPORT_SERIAL
            check_fields(transport, (("type", "str", "udp", TRANSPORTS),) + schema, where + ": transport", problems)
            if kind == "serial" and board == "sim" and not transport.get("device"):
                problems.append("%s: transport.device: the sim board needs a serial device path (a PTY)" % where)
    _section(config, "batch", _BATCH, where + ": ", problems)
    store = _section(config, "store", _STORE, where + ": ", problems)
    if isinstance(store.get("segment_kib"), int) and isinstance(store.get("max_kib"), int):
        if store["segment_kib"] * 2 > store["max_kib"]:
            problems.append("%s: store.max_kib: must hold at least two segments (2 x segment_kib)" % where)
    _section(config, "health", _HEALTH, where + ": ", problems)
    if board == "sim":
        _section(config, "sim", _SIM, where + ": ", problems)
    channels = config.get("channels")
    if not isinstance(channels, list):
        problems.append("%s: channels: missing (a list of channel objects)" % where)
        channels = []
    names = []
    known = None
    for i in range(len(channels)):
        ch = channels[i]
        here = "%s: channels[%d]" % (where, i)
        if not isinstance(ch, dict):
            problems.append("%s: must be an object" % here)
            continue
        check_fields(ch, _CHANNEL, here, problems, allow_extra=True)
        name = ch.get("name")
        if isinstance(name, str):
            if not name or len(name) > 24 or [c for c in name if c not in _NAME_CHARS]:
                problems.append("%s.name: %r must be 1..24 of letters, digits, - and _" % (here, name))
            if name in names:
                problems.append("%s.name: %r is used by another channel" % (here, name))
            names.append(name)
        driver_name = ch.get("driver")
        if not isinstance(driver_name, str):
            continue
        if known is None:
            known = known_drivers()
        if driver_name not in known or driver_name == "health":
            problems.append(
                "%s.driver: unknown driver %r, known: %s"
                % (here, driver_name, ", ".join(n for n in known if n != "health"))
            )
            continue
        driver = load_driver(driver_name)
        before = len(problems)
        settings = (("name", "str", None, None), ("driver", "str", None, None), ("period_ms", "int", None, None))
        check_fields(ch, settings + driver.SETTINGS, here, problems)
        if len(problems) == before and hasattr(driver, "validate"):
            driver.validate(ch, here, problems)
    if problems:
        raise ConfigError(problems)
    return config


def load(path=PATH):
    """Parse and validate config.json, after applying a gateway update the
    running node left in ``config.update`` (see ``apply_pending``); raise
    ConfigError with every problem."""
    config = _load(path)
    if path == PATH:
        config = apply_pending(config)
    return config


def apply_pending(config):
    """``config`` with the update the running node saved (node/app.py
    ``on_config``: MAC-verified, newer version) applied and saved, or
    unchanged (the update's problems printed) when it is not valid.  The
    update is consumed either way.  Power-loss safe: an update saved but not
    yet applied is applied at the next boot; one applied twice is refused
    as not newer."""
    text = fsutil.read_replaced(UPDATE_PATH)
    if text is None:
        return config
    try:
        update = json.loads(text)
        new = apply_update(config, update["version"], update["settings"])
    except (ValueError, KeyError, TypeError, AttributeError):
        print("config update: %s is damaged; ignored" % UPDATE_PATH)
        new = None
    except ConfigError as exc:
        for line in exc.problems:
            print(line)
        print("config update: rejected, keeping version %d" % config.get("cfg_ver", 0))
        new = None
    if new is not None:
        save(new)
        print("config: version %d applied" % new["cfg_ver"])
    fsutil.remove(UPDATE_PATH)
    fsutil.remove(UPDATE_PATH + ".tmp")
    return new or config


def _load(path):
    text = fsutil.read_replaced(path)
    if text is None:
        raise ConfigError(["%s: not found in %s (copy one from docs/firmware.md)" % (path, os.getcwd())])
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ConfigError(["%s: not valid JSON (%s)" % (path, exc)])
    return validate(config, path)


def save(config, path=PATH):
    data = {}
    for key in config:
        if not key.startswith("_"):
            data[key] = config[key]
    fsutil.write_replace(path, json.dumps(data).encode())


def apply_update(config, version, settings):
    """A copy of ``config`` with a gateway config update applied, validated.

    ``settings`` maps dotted paths to values: ``batch.max_records``,
    ``health.period_s``, ``channels.<name>.<setting>``.  Raises ConfigError
    (nothing changes) when the result would be invalid.
    """
    if version <= config.get("cfg_ver", 0):
        raise ConfigError(["config update: version %d is not newer than %d" % (version, config.get("cfg_ver", 0))])
    new = json.loads(json.dumps(dict((k, v) for k, v in config.items() if not k.startswith("_"))))
    for path, value in settings.items():
        parts = path.split(".")
        target = new
        if parts[0] == "channels" and len(parts) == 3:
            target = None
            for ch in new.get("channels", ()):
                if ch.get("name") == parts[1]:
                    target = ch
            if target is None:
                raise ConfigError(["config update: %s: no channel named %r" % (path, parts[1])])
            parts = parts[2:]
        elif parts[0] in ("node_id", "key", "channels"):
            raise ConfigError(["config update: %s: cannot be changed remotely" % path])
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(["config update: %s: not a setting" % path])
        target[parts[-1]] = value
    new["cfg_ver"] = version
    return validate(new, "config update")

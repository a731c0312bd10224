"""gateway.toml validation: each mistake names the file and key and says what
would be valid; the reference config in docs/ is valid."""

import pathlib

import pytest

from smemet.gateway.config import DEFAULT_UDP_PORT, load_config
from smemet.gateway.errors import ConfigError

MINIMAL = '[keys]\nfile = "keys.toml"\n[outbox]\npath = "outbox.sqlite"\n'
REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "gateway.toml"


def write(tmp_path, text):
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


def error_of(tmp_path, text) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


def test_minimal_config_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.keys_file == str(tmp_path / "keys.toml")  # relative to the config file
    assert config.outbox.path == str(tmp_path / "outbox.sqlite")
    assert config.udp.port == DEFAULT_UDP_PORT and config.udp.bind == "0.0.0.0"
    assert config.metrics.bind == "127.0.0.1"
    assert config.outbox.audit_retention == 7 * 86400
    assert config.routes == [] and config.serial == ()


def test_reference_config_is_valid():
    config = load_config(str(REFERENCE))
    assert config.udp is not None and config.outbox.max_bytes > 0
    assert config.steps_for("furnace-1", "tc_s") is not None


def test_reference_chains_name_channels_the_demo_nodes_send():
    """A newcomer runs the demo with docs/gateway.toml: each of its chains
    must apply to a channel the demo's nodes send, and those get processed."""
    from fnmatch import fnmatchcase

    from smemet.sim_fleet import PLANT, scenario

    sent = {f"{prefix}-1/{channel['name']}" for prefix, story in PLANT for channel in scenario(story).channels}
    config = load_config(str(REFERENCE))
    assert config.channels, "the reference shows processing chains"
    for pattern, _ in config.channels:
        assert any(fnmatchcase(name, pattern) for name in sent), (pattern, sorted(sent))
    for name in ("furnace-1/tc_s", "furnace-1/tc_b", "flowloop-1/flow"):
        assert config.steps_for(*name.split("/")) is not None, name


def test_sizes_and_durations(tmp_path):
    config = load_config(write(tmp_path, MINIMAL.replace(
        'path = "outbox.sqlite"', 'path = "outbox.sqlite"\nmax_bytes = "1.5GiB"\naudit_retention = "36h"\ncommit_max_delay = "5ms"'
    )))
    assert config.outbox.max_bytes == int(1.5 * 2**30)
    assert config.outbox.audit_retention == 36 * 3600
    assert config.outbox.commit_max_delay == pytest.approx(0.005)


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("", "keys", "missing [keys]"),
        ('[keys]\nfile = "k"\n', "outbox", "missing [outbox]"),
        (MINIMAL + "[ingest.udp]\nprot = 1\n", "ingest.udp.prot", "unknown key; valid keys are enabled, bind, port, receive_buffer"),
        (MINIMAL + '[ingest.udp]\nreceive_buffer = "lots"\n', "ingest.udp.receive_buffer", "a size such as 500MB"),
        (MINIMAL + "[ingest.udp]\nport = 70000\n", "ingest.udp.port", "0..65535"),
        (MINIMAL + '[ingest.udp]\nbind = "localhost"\n', "ingest.udp.bind", "IPv4 or IPv6"),
        (MINIMAL + "[ingest.udp]\nenabled = false\n", "ingest", "no ingest enabled"),
        (MINIMAL + "[[ingest.serial]]\nbaud = 9600\n", "ingest.serial[0].device", "missing"),
        (MINIMAL.replace('"outbox.sqlite"', '"o"\nmax_bytes = "lots"'), "outbox.max_bytes", "size such as"),
        (MINIMAL.replace('"outbox.sqlite"', '"o"\naudit_retention = "a week"'), "outbox.audit_retention", "duration"),
        (MINIMAL.replace('"outbox.sqlite"', '"o"\ncommit_max_delay = "3s"'), "outbox.commit_max_delay", "at most 1s"),
        (MINIMAL + '[log]\nlevel = "loud"\n', "log.level", "'debug'"),
        (MINIMAL + "[metrics]\nport = -1\n", "metrics.port", "0..65535"),
        (MINIMAL + "[extras]\n", "extras", "unknown key; valid keys are gateway, keys"),
        (MINIMAL + '[channels."t"]\nsteps = []\n', 'channels."t"', "node/channel"),
        (MINIMAL + '[channels."n/t"]\nunit = "K"\n', 'channels."n/t".steps', "missing"),
        (MINIMAL + '[channels."n/t"]\nsteps = [{type = "smooth"}]\n', "steps[0].type", "unknown step type"),
        (MINIMAL + '[channels."n/t"]\nsteps = [{type = "hampel", window = 1}]\n', "steps[0].window", "3..10000"),
    ],
)
def test_errors_name_file_key_and_fix(tmp_path, text, where, words):
    error = error_of(tmp_path, text)
    assert str(tmp_path / "gateway.toml") in str(error)
    assert where in error.where
    assert words in str(error)
    assert "\n" not in str(error)


def test_not_toml(tmp_path):
    error = error_of(tmp_path, "[keys\n")
    assert "not valid TOML" in str(error)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.toml"))


def test_channel_patterns_exact_beats_glob(tmp_path):
    text = MINIMAL + (
        '[channels."furnace-*/t_*"]\nsteps = [{type = "ema", alpha = 0.5}]\n'
        '[channels."furnace-2/t_s"]\nunit = "Cel"\nsteps = [{type = "calibration", gain = 2.0}]\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.steps_for("furnace-2", "t_s")[0]["type"] == "calibration"
    assert config.unit_for("furnace-2", "t_s") == "Cel"
    assert config.steps_for("furnace-9", "t_x")[0]["type"] == "ema"
    assert config.unit_for("furnace-9", "t_x") is None
    assert config.steps_for("ladle-1", "t_x") is None

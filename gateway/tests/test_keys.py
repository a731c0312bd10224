"""The node key file: private or refused, parsed strictly, never echoed."""

import json
import os
import stat

import pytest

from smemet.gateway.errors import KeyFileError
from smemet.gateway.keys import KeyStore, add_key, check_permissions

KEY = "5ac3e1d0c2b4a6987a6c5e4f3021130412f6e8dacbbdaf9180726354453627a1"


def key_file(tmp_path, text, name="keys.toml", mode=0o600):
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_file_loads(tmp_path, mode):
    store = KeyStore.load(key_file(tmp_path, f'"ladle-7" = "{KEY}"\n', mode=mode))
    assert store.get(b"ladle-7") == bytes.fromhex(KEY)
    assert store.get(b"ladle-8") is None
    assert KEY not in repr(store)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_readable_by_others_is_refused_with_the_fix(tmp_path, mode):
    path = key_file(tmp_path, f'"ladle-7" = "{KEY}"\n', mode=mode)
    with pytest.raises(KeyFileError) as info:
        KeyStore.load(path)
    assert f"chmod 600 {path}" in str(info.value)
    assert KEY not in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_file_of_another_user_is_refused(tmp_path):
    path = key_file(tmp_path, f'"ladle-7" = "{KEY}"\n')
    os.chown(path, 12345, -1)
    with pytest.raises(KeyFileError, match="owned by uid 12345"):
        check_permissions(path)


def test_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(KeyFileError, match="keys add"):
        KeyStore.load(str(tmp_path / "none.toml"))


def test_json_and_nodes_table(tmp_path):
    store = KeyStore.load(key_file(tmp_path, json.dumps({"a-1": KEY}), name="keys.json"))
    assert store.nodes() == ["a-1"]
    store = KeyStore.load(key_file(tmp_path, f'[nodes]\n"b-2" = "{KEY}"\n'))
    assert store.nodes() == ["b-2"]


@pytest.mark.parametrize(
    "text, words",
    [
        ('"n1" = "zz"\n', "not valid hex"),
        ('"n1" = "00ff"\n', "at least 16"),
        ('"n1" = 5\n', "hex string"),
        (f'"bad id!" = "{KEY}"\n', "not valid"),
        ('"n1" = \n', "not valid TOML"),
    ],
)
def test_malformed_entries(tmp_path, text, words):
    with pytest.raises(KeyFileError) as info:
        KeyStore.load(key_file(tmp_path, text))
    assert words in str(info.value)
    assert KEY not in str(info.value)


def test_add_key_creates_private_file_and_refuses_duplicates(tmp_path):
    path = str(tmp_path / "keys.toml")
    key = add_key(path, "ladle-7")
    assert len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = add_key(path, "ladle-8")
    store = KeyStore.load(path)
    assert store.get(b"ladle-7") == key and store.get(b"ladle-8") == second
    with pytest.raises(KeyFileError, match="already has a key"):
        add_key(path, "ladle-7")
    assert KeyStore.load(path).get(b"ladle-7") == key


def test_add_key_json(tmp_path):
    path = str(tmp_path / "keys.json")
    key = add_key(path, "n1", bytes(range(16)))
    add_key(path, "n2")
    with open(path) as f:
        assert json.load(f)["n1"] == key.hex()
    assert KeyStore.load(path).nodes() == ["n1", "n2"]

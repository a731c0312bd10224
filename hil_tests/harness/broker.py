"""A real Mosquitto broker for tests, and a subscriber that collects messages.

``MosquittoBroker`` runs /usr/sbin/mosquitto (or ``mosquitto`` on PATH) on a
free loopback port in its own directory, configured never to drop queued
QoS 1 messages: persistence on, no limit on queued messages or bytes.  It can
be stopped and started again on the same port (outage tests) and comes in
variants: plain, passwords, TLS (a CA, server and client certificate made
with the ``cryptography`` package), and per-user ACLs.

Use it as a context manager::

    with MosquittoBroker(tmp_path, users={"a": "pw-a"}, acl={"a": ["readwrite partners/a/#"]}) as broker:
        ...

or, in pytest, through the fixtures ``mosquitto_broker`` (plain) and
``make_broker`` (a factory taking the same options)::

    pytest_plugins = ["hil_tests.harness.broker"]   # in a conftest.py
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from smemet.processes import stop_gracefully

_HOST = "127.0.0.1"


class BrokerError(RuntimeError):
    """Mosquitto is missing or would not start; the message says what to do."""


def find_mosquitto() -> str:
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(
        "mosquitto is not installed: the MQTT tests need a real broker; "
        "install it with `sudo apt-get install mosquitto mosquitto-clients` (Debian/Ubuntu)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of the test PKI: one CA signs the server and client certificates."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, hostname: str = "localhost", client_name: str = "smemet-client") -> TlsFiles:
    """A throwaway CA, a server certificate for ``hostname`` and 127.0.0.1,
    and a client certificate, written into ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("SME-MET test CA"))
        .issuer_name(name("SME-MET test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage, sans: list | None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server_cert = leaf(
        hostname,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address(_HOST))],
    )
    client_key, client_cert = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    write_key(server_key, files.server_key)
    write_key(client_key, files.client_key)
    return files


class MosquittoBroker:
    """One Mosquitto process on a fixed loopback port, restartable.

    ``users`` maps user names to passwords (anonymous access is then off);
    ``acl`` maps user names to Mosquitto ACL lines (``"read a/#"``,
    ``"write b/#"``, ``"readwrite c/#"``); ``tls`` turns the listener into
    TLS, and ``require_client_cert`` makes it demand a client certificate.
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        users: dict[str, str] | None = None,
        acl: dict[str, list[str]] | None = None,
        tls: bool = False,
        require_client_cert: bool = False,
        port: int | None = None,
    ) -> None:
        self._own_dir = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="smemet-mosquitto-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.executable = find_mosquitto()
        self.users = dict(users or {})
        self.acl = {user: list(lines) for user, lines in (acl or {}).items()}
        self.port = port or free_port()
        self._port_chosen_here = port is None  # may move to another free port until first started
        self.host = _HOST
        self.tls_files = make_pki(self.directory / "pki") if tls else None
        self.require_client_cert = require_client_cert
        self.process: subprocess.Popen | None = None
        self.config_path = self.directory / "mosquitto.conf"
        self.log_path = self.directory / "mosquitto.log"
        self._write_config()

    # -- configuration ----------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls_files else 'mqtt'}://{self.host}:{self.port}"

    def _write_config(self) -> None:
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        lines = [
            f"pid_file {self.directory / 'mosquitto.pid'}",
            # Never drop queued QoS 1 messages: persist, and no queue limits.
            "persistence true",
            f"persistence_location {data}/",
            "autosave_interval 1",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 0",
            "persistent_client_expiration 1d",
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            f"listener {self.port} {self.host}",
        ]
        if os.geteuid() == 0:
            # Run as root, Mosquitto would switch to user "mosquitto", who
            # cannot write to a test's temp directory.
            lines.insert(0, "user root")
        if self.users:
            passwd = self.directory / "passwd"
            passwd.write_text("")
            passwd.chmod(0o600)
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl:
            acl_path = self.directory / "acl"
            text = []
            for user, entries in self.acl.items():
                text.append(f"user {user}")
                text += [f"topic {entry}" for entry in entries]
                text.append("")
            acl_path.write_text("\n".join(text))
            acl_path.chmod(0o600)
            lines.append(f"acl_file {acl_path}")
        if self.tls_files:
            lines += [
                f"cafile {self.tls_files.ca}",
                f"certfile {self.tls_files.server_cert}",
                f"keyfile {self.tls_files.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")

    # -- lifecycle --------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [self.executable, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                if self._port_chosen_here and "in use" in (err + self.log_tail()):
                    # Another process took the port between choosing and listening.
                    self._close_process()
                    self.port = free_port()
                    self._write_config()
                    self._port_chosen_here = False  # one move is enough
                    return self.start(timeout)
                raise BrokerError(
                    f"mosquitto exited with code {self.process.returncode} at start "
                    f"(port {self.port}): {err.strip()} {self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    self._port_chosen_here = False  # restarts keep this port (outage tests)
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout} s")
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM): Mosquitto saves its persistence file."""
        if self.process is None:
            return
        stop_gracefully(self.process, timeout)
        self._close_process()

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), as a crash or power cut."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_process()

    def _close_process(self) -> None:
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- handy for tests ----------------------------------------------------

    def route_table(self, name: str, **overrides) -> dict:
        """A ``[[routes]]`` table pointing at this broker (for ``parse_routes``)."""
        table: dict = {"name": name, "broker": self.url, "topic_prefix": f"test/{name}", "include": ["*"]}
        if self.tls_files:
            table["tls"] = {"ca": str(self.tls_files.ca)}
            if self.require_client_cert:
                table["tls"].update(cert=str(self.tls_files.client_cert), key=str(self.tls_files.client_key))
        table.update(overrides)
        return table

    def subscriber(self, topics: str | list[str], **kwargs) -> Subscriber:
        return Subscriber(self, topics, **kwargs)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: dict = field(default_factory=dict)
    at: float = 0.0  # Unix s when the subscriber got it

    def json(self):
        import json

        return json.loads(self.payload)


class Subscriber:
    """Collects messages from a broker in a background thread (paho-mqtt).

    By default the session is persistent (clean_session False) and
    reconnects on its own, so it keeps receiving across broker restarts.
    ``granted`` holds the SUBACK results, ``connect_error`` a refused login.
    """

    def __init__(
        self,
        broker: MosquittoBroker,
        topics: str | list[str],
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        persistent: bool = True,
        mqtt5: bool = False,
        client_cert: bool | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.broker = broker
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.messages: list[Received] = []
        self.granted: list = []
        self.connect_error: str | None = None
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._refused = threading.Event()
        self._mqtt5 = mqtt5
        protocol = mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311
        kwargs = {} if mqtt5 else {"clean_session": not persistent}
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"sub-{uuid.uuid4().hex[:10]}",
            protocol=protocol,
            **kwargs,
        )
        self._persistent = persistent
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.tls_files:
            use_cert = broker.require_client_cert if client_cert is None else client_cert
            self.client.tls_set(
                ca_certs=str(broker.tls_files.ca),
                certfile=str(broker.tls_files.client_cert) if use_cert else None,
                keyfile=str(broker.tls_files.client_key) if use_cert else None,
            )
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.connect_error = str(reason_code)
            self._refused.set()
            return
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.granted = list(reason_codes)
        self._subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        props = {}
        if message.properties is not None:
            props = {name: getattr(message.properties, name) for name in _PROPERTY_NAMES if hasattr(message.properties, name)}
        with self._lock:
            self.messages.append(Received(message.topic, message.payload, message.qos, message.retain, props,
                                          time.time()))

    def start(self, timeout: float = 10.0) -> Subscriber:
        if self._mqtt5:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes

            props = Properties(PacketTypes.CONNECT)
            if self._persistent:
                props.SessionExpiryInterval = 3600
            self.client.connect(
                self.broker.host, self.broker.port, clean_start=not self._persistent, properties=props
            )
        else:
            self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while not self._subscribed.is_set():
            if self._refused.is_set():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"subscriber could not subscribe to {self.topics} within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.messages)

    def count(self, predicate: Callable[[Received], bool] | None = None) -> int:
        with self._lock:
            return sum(1 for m in self.messages if predicate is None or predicate(m))

    async def wait_until(self, condition: Callable[[list[Received]], bool], timeout: float = 30.0) -> list[Received]:
        """Wait (without blocking the event loop) until ``condition`` holds
        for the messages so far; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.snapshot()
            if condition(messages):
                return messages
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {timeout} s with {len(messages)} messages")
            await asyncio.sleep(0.05)

    async def wait_for(
        self, n: int, predicate: Callable[[Received], bool] | None = None, timeout: float = 30.0
    ) -> list[Received]:
        """Wait (without blocking the event loop) until ``n`` matching
        messages arrived; returns them, or raises TimeoutError saying how many came."""
        deadline = time.monotonic() + timeout
        while True:
            if self.count(predicate) >= n:
                return [m for m in self.snapshot() if predicate is None or predicate(m)]
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {n} messages on {self.topics}, got {self.count(predicate)}")
            await asyncio.sleep(0.02)


_PROPERTY_NAMES = ("ContentType", "MessageExpiryInterval", "PayloadFormatIndicator", "UserProperty")


# -- pytest fixtures --------------------------------------------------------


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """A factory: ``make_broker(users=..., acl=..., tls=...)`` starts a broker;
    all are stopped at the end of the test."""
    brokers: list[MosquittoBroker] = []

    def make(**options) -> MosquittoBroker:
        broker = MosquittoBroker(tmp_path / f"broker{len(brokers)}", **options)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def mosquitto_broker(make_broker) -> MosquittoBroker:
    """A plain Mosquitto (anonymous, no TLS) on a free loopback port."""
    return make_broker()

"""What the field tools read of a gateway: its key store (which nodes are
registered), its Prometheus endpoint (last valid frame per node, store
depth, rejects) and its outbox (SQLite, read-only: the newest status frame
of a node gives its firmware version, store depth, uptime, reset cause).

Nothing here writes to the gateway's files except ``register_node``, which
goes through the gateway's own key store code (gateway/keys.py: atomic
write, mode 0600).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from .errors import UserError

LAST_SEEN = "smemet_gateway_node_last_seen_timestamp_seconds"
STORE_DEPTH = "smemet_gateway_node_store_depth"
REJECTED = "smemet_gateway_frames_rejected_total"
NODE_REJECTED = "smemet_gateway_node_frames_rejected_total"
KEY_LOADED = "smemet_gateway_node_key_loaded"
UNKNOWN_NODE = "smemet_gateway_unknown_node_frames_total"
STORAGE_FULL = "smemet_gateway_storage_full"
REFUSED_FULL = "smemet_gateway_frames_refused_full_total"
RELOAD = "systemctl reload smemet-gateway"
DEFAULT_METRICS_URL = "http://127.0.0.1:9470/metrics"


@dataclass
class GatewayFiles:
    """Where a gateway keeps what the tools read."""

    keys_file: str
    outbox: str | None = None  # outbox database, when known
    metrics_url: str | None = None  # Prometheus endpoint, when enabled
    udp_port: int | None = None
    source: str = ""  # the gateway.toml, for messages
    due_warning: float | None = None  # [calibration] due_warning (s); None: the default


def from_config(path: str) -> GatewayFiles:
    """Read a gateway.toml (one line for any mistake in it)."""
    from smemet.gateway.config import load_config
    from smemet.gateway.errors import GatewayError

    try:  # the outputs' sections are not read: no partner password or certificate is needed here
        config = load_config(path, sinks=False)
    except GatewayError as exc:
        raise UserError(f"bad gateway config: {exc}") from None
    metrics = None
    if config.metrics.port:
        host = config.metrics.bind
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        host = f"[{host}]" if ":" in host else host
        metrics = f"http://{host}:{config.metrics.port}/metrics"
    udp = config.udp.port if config.udp is not None else None
    return GatewayFiles(config.keys_file, config.outbox.path, metrics, udp, path, config.calibration.due_warning)


def gateway_files(gateway_config: str | None, keys: str | None, metrics: str | None = None,
                  outbox: str | None = None) -> GatewayFiles:
    """From ``--gateway-config FILE`` or ``--keys FILE`` (with optional
    ``--metrics URL`` / ``--outbox FILE``)."""
    if gateway_config:
        files = from_config(gateway_config)
        if metrics:
            files.metrics_url = metrics
        return files
    if not keys:
        raise UserError("say where the gateway's key store is: --gateway-config /etc/smemet/gateway.toml "
                        "(or --keys FILE)")
    return GatewayFiles(keys, outbox, metrics or DEFAULT_METRICS_URL)


# ---------------------------------------------------------------- key store


def registered_nodes(keys_file: str) -> dict[str, bytes]:
    """node id -> key, read with the gateway's own checks (owner, mode 600)."""
    from smemet.gateway.errors import GatewayError
    from smemet.gateway.keys import KeyStore

    try:
        store = KeyStore.load(keys_file)
    except GatewayError as exc:
        raise UserError(str(exc)) from None
    return {node: store.get(node.encode()) for node in store.nodes()}


def register_node(keys_file: str, node: str, key: bytes | None = None) -> tuple[bytes, bool]:
    """The node's key and whether it is new: an already registered node
    keeps its key (re-running commission or sim must not break a node that
    has it); otherwise ``key`` (or a fresh one) is added to the key store."""
    import os

    from smemet.gateway.errors import GatewayError
    from smemet.gateway.keys import add_key, validate_node_id

    try:
        validate_node_id(node)
        if os.path.exists(keys_file):
            known = registered_nodes(keys_file)
            if node in known:
                return known[node], False
        return add_key(keys_file, node, key), True
    except GatewayError as exc:
        raise UserError(str(exc)) from None


def check_writable(keys_file: str) -> None:
    """UserError unless the key store can be written (added to) by this
    user: checked before a command touches a node, not half-way."""
    import os

    directory = os.path.dirname(os.path.abspath(keys_file))
    if not os.path.isdir(directory):
        raise UserError(f"the key store's folder {directory} does not exist (key store {keys_file}); create it or "
                        "give another --keys / --gateway-config")
    target = keys_file if os.path.exists(keys_file) else directory
    # the key file is replaced through a file beside it: its folder must be writable too
    if not os.access(directory, os.W_OK | os.X_OK) or not os.access(target, os.W_OK):
        raise UserError(f"cannot add a key to {keys_file}: {directory} is not writable by this user; run as the "
                        "gateway's user (sudo -u smemet smemet ...) or give a key store you may write")


# ---------------------------------------------------------------- metrics


class Metrics(dict):
    """{(sample name, sorted label items): value} of one scrape."""

    def value(self, name: str, **labels) -> float | None:
        return self.get((name, tuple(sorted(labels.items()))))

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {dict(labels).get(label, "?"): v for (n, labels), v in self.items() if n == name}


def fetch(url: str, timeout: float = 3.0) -> tuple[str, str]:
    """(body, content type) of a GET; UserError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", "replace"), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        if exc.code == 503 and url.endswith("/healthz"):  # "failing": the document says why
            return exc.read().decode("utf-8", "replace"), exc.headers.get("Content-Type", "")
        raise UserError(f"{url} answers HTTP {exc.code} {exc.reason}: is that the gateway's metrics endpoint? "
                        f"(default {DEFAULT_METRICS_URL})") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"the gateway does not answer at {url} ({reason}): is it running "
                        "(systemctl status smemet-gateway)? is [metrics] port enabled in its config?") from None


def scrape(url: str, timeout: float = 3.0) -> Metrics:
    """One scrape of the gateway's metrics; UserError when it does not
    answer, or answers with something else (a web page, another exporter)."""
    from prometheus_client.parser import text_string_to_metric_families

    text, content_type = fetch(url, timeout)
    out = Metrics()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    except (ValueError, TypeError, IndexError):
        out = Metrics()
    if not any(name.startswith("smemet_gateway_") for name, _labels in out):
        what = "a web page" if "html" in content_type or text.lstrip()[:1] == "<" else "no gateway metrics"
        raise UserError(f"{url} answers, but with {what}, not the gateway's metrics: give the gateway's metrics "
                        f"endpoint ([metrics] bind and port in gateway.toml; default {DEFAULT_METRICS_URL})")
    return out


def health(metrics_url: str, timeout: float = 3.0) -> dict | None:
    """The gateway's /healthz document (beside its metrics), or None when
    it has none (an older gateway) or does not answer."""
    import json
    from urllib.parse import urlsplit, urlunsplit

    url = urlunsplit(urlsplit(metrics_url)._replace(path="/healthz", query="", fragment=""))
    try:
        text, _type = fetch(url, timeout)
        document = json.loads(text)
    except (UserError, ValueError):
        return None
    return document if isinstance(document, dict) and "status" in document else None


# ---------------------------------------------------------------- outbox


def outbox_view(path: str | None):
    """The gateway's read-only outbox view (smemet.gateway.outbox_view), or
    None when there is no readable outbox at ``path``."""
    from smemet.gateway.outbox_view import OutboxView

    return OutboxView.open(path)


def calibration_attention(path: str | None, due_warning: float | None, now: float) -> list:
    """The sensors needing calibration attention (calibration/attention.py),
    from the outbox's calibration tables; [] without them (an older outbox,
    or none readable: the node table still shows)."""
    import sqlite3

    from smemet.gateway.calibration.attention import needing_attention
    from smemet.gateway.calibration.config import DEFAULT_DUE_WARNING
    from smemet.gateway.calibration.store import CalibrationStore
    from smemet.gateway.errors import GatewayError

    if not path:
        return []
    try:
        store = CalibrationStore.open(path, readonly=True)
    except GatewayError:
        return []
    try:
        return needing_attention(store.records(), store.sats(), store.lives(), now,
                                 DEFAULT_DUE_WARNING if due_warning is None else due_warning)
    except sqlite3.Error:  # no calibration tables yet
        return []
    finally:
        store.close()


def age_text(then: float | None, now: float | None = None) -> str:
    """"12s ago", "3m ago", "never"."""
    if not then:
        return "never"
    seconds = max(0.0, (now or time.time()) - then)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"

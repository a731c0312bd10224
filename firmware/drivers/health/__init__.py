"""Node health, sent as a status message (content type 65001, a SenML pack):
uptime (s), heap_free (B), store_depth and store_dropped (frames, no unit),
store_torn, reset_cause (text), rssi (dBm, when the board knows it), fw
(text), cfg_ver.  Not a channel driver: the app sends it every
``health.period_s``."""

import gc

NAME = "health"
BUS = None
UNITS = ("s", "B", "dBm")
SETTINGS = ()


def add_records(builder, node, t_ms):
    """Append the health records of ``node`` (the running App) to a
    PackBuilder."""
    gc.collect()
    builder.add("uptime", "s", node.clock.mono_ms() // 1000, t_ms)
    builder.add("heap_free", "B", gc.mem_free(), t_ms)
    builder.add("store_depth", None, node.store.depth, t_ms)
    builder.add("store_dropped", None, node.store.dropped, t_ms)
    builder.add("store_torn", None, node.store.torn, t_ms)
    builder.add_text("reset_cause", node.reset_cause, t_ms)
    rssi = node.board.rssi()
    if rssi is not None:
        builder.add("rssi", "dBm", rssi, t_ms)
    builder.add_text("fw", node.version, t_ms)
    builder.add("cfg_ver", None, node.config.get("cfg_ver", 0), t_ms)

"""The web console: a local page a field engineer opens on a laptop or a
phone to see at a glance that every node is alive and every partner is
fed, and the JSON API behind it (``/api/v1/...``) for scripts.

Configured by ``[web]`` in gateway.toml (``config.py``; docs/gateway.toml,
docs/web-console.md).  One ``WebSink`` (``sink.py``) folds every frame into
the in-memory state (``console.py``); a sampler reads the gateway's
counters once a second (``activity.py``); ``views.py`` makes the JSON
documents; ``server.py`` serves them, the page (``static/``) and live
updates (Server-Sent Events); logins in ``sessions.py``/``passwords.py``.
"""

from __future__ import annotations

from .config import WebConfig, parse_web

SECTION = "web"

__all__ = ["SECTION", "WebConfig", "parse", "sinks"]


def parse(value, context) -> WebConfig | None:
    return parse_web(value, context.where(SECTION), context.base)


def sinks(config: WebConfig | None, context) -> list:
    if config is None:  # port = 0: the console is off
        return []
    from .sink import WebSink  # aiohttp only where the console runs, not for every config check

    return [WebSink(config, context.status)]

"""The console's HTTP server (aiohttp, on the gateway's event loop).

    GET  /                      the page (static/index.html and its assets)
    GET  /login, POST /login    the login form (when users are configured)
    POST /logout
    GET  /healthz               {"status": "ok" | "degraded" | "failing", "problems": [...]}, no login
    GET  /api/v1/gateway | nodes | node/{id} | routes | rejects | modbus | session
    GET  /api/v1/events         Server-Sent Events: the same documents, every ``refresh`` seconds
    GET  /api/v1/schema/{name}.json   the JSON Schema of each document

Read-only: nothing here changes the gateway.  Every error on ``/api/`` is
JSON ``{"error": "..."}`` with the right status (400, 401, 404, 405, 429).
Opened without a login (loopback), requests must name a loopback host: a web
page elsewhere cannot reach the console through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import mimetypes
import os
import time
from importlib import resources
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from ...errors import ConfigError
from .config import WebConfig, server_context
from .sessions import COOKIE, Checker, Sessions, Throttle
from .views import BadQuery, NodeQuery, Views

log = logging.getLogger("smemet.gateway.sinks.web")

MAX_STREAMS = 32  # live pages at once
_STATIC = ("index.html", "login.html", "console.css", "console.js", "icon.svg")
_SCHEMAS = ("gateway", "nodes", "node", "routes", "rejects", "modbus", "session", "healthz", "error")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_WAITING = NodeQuery(states=("waiting",), sort="node", limit=100)  # commissioning: nodes yet to send
_OPEN = ("/static/", "/login", "/healthz", "/api/v1/schema/")  # served without a session


def _json(body: object, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


def _package_file(*parts: str) -> bytes:
    return resources.files(__package__).joinpath(*parts).read_bytes()


class ConsoleServer:
    def __init__(self, config: WebConfig, views: Views) -> None:
        self.config = config
        self.views = views
        self.sessions = Sessions(config.session_ttl)
        self.throttle = Throttle()
        self.checker = Checker(config.users)
        self.closing = asyncio.Event()
        self.streams = 0
        self._static = {name: _package_file("static", name) for name in _STATIC}
        self._schemas = {name: _package_file("schema", f"{name}.json") for name in _SCHEMAS}
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None  # where it listens (the real port when 0 was asked)

    # -- life -----------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/healthz", self._healthz)
        api = "/api/v1"
        app.router.add_get(f"{api}/gateway", self._document(self.views.gateway))
        app.router.add_get(f"{api}/nodes", self._nodes)
        app.router.add_get(f"{api}/node/{{node}}", self._node)
        app.router.add_get(f"{api}/routes", self._document(self.views.routes))
        app.router.add_get(f"{api}/rejects", self._document(self.views.rejects))
        app.router.add_get(f"{api}/modbus", self._document(self.views.modbus))
        app.router.add_get(f"{api}/session", self._session)
        app.router.add_get(f"{api}/events", self._events)
        app.router.add_get(f"{api}/schema/{{name}}", self._schema)
        app.on_response_prepare.append(self._headers)
        return app

    async def start(self) -> None:
        config = self.config
        self._runner = runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        ssl_context = server_context(config.tls) if config.tls else None
        site = web.TCPSite(runner, config.bind, config.port, ssl_context=ssl_context, backlog=64)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            self._runner = None
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ConfigError(f"{config.where}.port", f"cannot listen on {config.bind}:{config.port} "
                              f"({reason}); another program uses the port or the address is not "
                              "this machine's: change [web] port or bind, or stop the other program") from None
        addresses = runner.addresses  # the real port, when 0 asked for any
        self.address = tuple(addresses[0][:2]) if addresses else (config.bind, config.port)
        if not config.loopback and config.tls is None:
            log.warning("web console on %s:%d without TLS: passwords and pages cross the network in clear; "
                        "set [web.tls] cert and key", config.bind, self.address[1])
        log.info("web console on %s (%s)", self.url,
                 "login required" if config.login_required else "open: loopback only")

    @property
    def url(self) -> str:
        host, port = self.address or (self.config.bind, self.config.port)
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.config.tls else 'http'}://{host}:{port}/"

    async def stop(self) -> None:
        self.closing.set()  # live streams end at their next tick
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middlewares ------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        """Errors as JSON on /api/, as one line of text elsewhere; never a traceback."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            message = {404: f"no such page: {request.path}",
                       405: f"{request.method} is not allowed here (read-only console)"}.get(exc.status, exc.reason)
            if request.path.startswith("/api/"):
                return _error(exc.status, message, headers)
            return web.Response(text=message + "\n", status=exc.status, headers=headers)
        except BadQuery as exc:
            return _error(400, str(exc))

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        config = self.config
        if not config.login_required:
            host = _host_name(request.host)
            if not _loopback_name(host):
                return web.Response(status=403, text=(
                    f"this console is open without a login to loopback clients only, not as {host!r}: open it "
                    "as http://127.0.0.1:PORT/ (an SSH tunnel works), or configure [web] users\n"))
            return await handler(request)
        if request.method == "POST" and not _same_origin(request):
            return web.Response(status=403, text="cross-site form refused\n")
        if request.path.startswith(_OPEN) and request.path != "/logout":
            return await handler(request)
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None:
            if request.path.startswith("/api/"):
                return _error(401, "login required: POST user and password to /login (form fields), "
                                   "then send the cookie it sets")
            raise web.HTTPSeeOther("/login")
        return await handler(request)

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if self.config.tls is not None:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")

    # -- pages ------------------------------------------------------------

    def _file(self, name: str) -> web.Response:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        charset = "utf-8" if content_type.startswith("text/") or content_type.endswith(("javascript", "svg+xml")) else None
        return web.Response(body=self._static[name], content_type=content_type, charset=charset,
                            headers={"Cache-Control": "no-cache"})

    async def _page(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._static or name.endswith(".html"):
            raise web.HTTPNotFound()
        return self._file(name)

    async def _login_page(self, request: web.Request) -> web.StreamResponse:
        if not self.config.login_required:
            raise web.HTTPSeeOther("/")
        return self._file("login.html")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if not self.config.login_required:
            return _error(400, "this console has no users: it is open (loopback only)")
        address = request.remote or "?"
        wait = self.throttle.wait(address)
        if wait > 0:
            return _error(429, f"too many wrong logins from {address}: try again in {wait:.0f} s",
                          {"Retry-After": str(int(wait) + 1)})
        form = await request.post()
        user, password = form.get("user"), form.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
            return _error(400, "give the form fields user and password")
        if not await self.checker.check(user, password):
            self.throttle.failed(address)
            log.warning("web console: failed login", extra={"user": user[:64], "peer": address})
            if _wants_json(request):
                return _error(401, "wrong user name or password")
            raise web.HTTPSeeOther("/login#failed")
        self.throttle.succeeded(address)
        token, session = self.sessions.create(user)
        log.info("web console: login", extra={"user": user, "peer": address})
        response = _json({"user": user, "expires": session.expires}) if _wants_json(request) else web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, token, max_age=int(self.config.session_ttl), path="/", httponly=True,
                            samesite="Strict", secure=self.config.tls is not None)
        if isinstance(response, web.HTTPException):
            raise response
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login" if self.config.login_required else "/")
        response.del_cookie(COOKIE, path="/")
        raise response

    def _session_of(self, request: web.Request):
        return self.sessions.get(request.cookies.get(COOKIE)) if self.config.login_required else None

    async def _healthz(self, request: web.Request) -> web.Response:
        status, body = self.views.health()
        return _json(body, status)

    # -- API --------------------------------------------------------------

    @staticmethod
    def _document(build):
        async def handler(request: web.Request) -> web.Response:
            return _json(build())
        return handler

    async def _nodes(self, request: web.Request) -> web.Response:
        return _json(self.views.nodes(NodeQuery.parse(request.query)))

    async def _node(self, request: web.Request) -> web.Response:
        name = request.match_info["node"]
        document = self.views.node(name)
        if document is None:
            return _error(404, f"no node {name!r}: it has no key and sent nothing")
        return _json(document)

    async def _session(self, request: web.Request) -> web.Response:
        session = self._session_of(request)
        if session is None:
            return _json({"login": False, "user": None, "expires": None})
        return _json({"login": True, "user": session.user, "expires": session.expires})

    async def _schema(self, request: web.Request) -> web.Response:
        name = request.match_info["name"].removesuffix(".json")
        if name not in self._schemas:
            raise web.HTTPNotFound()
        return web.Response(body=self._schemas[name], content_type="application/schema+json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: ``view=overview`` (default: gateway, nodes with
        the node-list parameters, waiting (nodes with state=waiting), routes,
        modbus) or ``view=node&node=ID`` (gateway, node), every ``refresh``
        seconds."""
        view = request.query.get("view", "overview")
        if view not in ("overview", "node"):
            raise BadQuery(f"view must be overview or node, not {view!r}")
        query = NodeQuery.parse(request.query) if view == "overview" else None
        node = request.query.get("node", "")
        if view == "node" and not node:
            raise BadQuery("view=node needs node=ID")
        if self.streams >= MAX_STREAMS:
            return _error(503, f"{MAX_STREAMS} live pages are open already; close one", {"Retry-After": "5"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        self.streams += 1
        session = self._session_of(request)
        try:
            await response.write(f"retry: {int(self.config.refresh * 2000)}\n\n".encode())
            while not self.closing.is_set():
                if session is not None and time.time() >= session.expires:
                    await response.write(b"event: expired\ndata: {}\n\n")
                    break
                await response.write(self._tick(view, query, node))
                try:
                    await asyncio.wait_for(self.closing.wait(), self.config.refresh)
                except TimeoutError:
                    pass
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass  # the page went away
        finally:
            self.streams -= 1
        return response

    def _tick(self, view: str, query: NodeQuery | None, node: str) -> bytes:
        views = self.views
        events = [("gateway", views.gateway())]
        if view == "overview":
            events += [("nodes", views.nodes(query)), ("waiting", views.nodes(_WAITING)), ("routes", views.routes()),
                       ("modbus", views.modbus())]
        else:
            document = views.node(node)
            events.append(("node", document if document is not None else {"error": f"no node {node!r}"}))
        return b"".join(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n" for name, body in events)


def _host_name(host: str) -> str:
    """The host part of a Host header (without port; IPv6 without brackets)."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_origin(request: web.Request) -> bool:
    """A form POST from this console's own page: no Origin (an old browser,
    a script) or an Origin naming this host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")

"""gunicorn, embedded: the provider's HTTP server over mutual TLS 1.3.

:class:`ProviderServer` is a ``gunicorn.app.base.BaseApplication`` whose
settings come from :class:`ServerOptions` (built from the configuration's
``server:`` section) instead of gunicorn's own command line or config file,
so one YAML file configures everything and nothing else is read.

Why these gunicorn settings:

* :class:`provider.worker.EventLoopWorker` workers: separate processes give
  real parallelism for signature checks; in each, a few event-loop threads own
  the connections, so a warm verdict costs no thread hand-off and a stalled
  client no thread (see that module).
* ``keepalive`` of a few seconds: Gatekeeper opens a new TLS connection per
  call and then leaves it idle; idle connections are closed quickly so they
  do not pile up against ``worker_connections``.
* ``timeout``/``graceful_timeout``: a worker whose main loop stops answering
  is replaced; on SIGTERM, in-flight requests finish within the grace period.
* ``limit_request_*``: Gatekeeper sends one POST with a small header block.
* JSON lines for access and error logs.

The client DNS-name pin cannot be expressed to OpenSSL, so
:class:`ProviderWorker` checks it right after the handshake and closes
the connection before a byte of HTTP is read when it does not match.

Kubelet's HTTP probes present no client certificate, so they cannot reach the
main listener. With ``server.healthListen`` the same gunicorn also binds a
second, plain-HTTP socket: the worker leaves connections accepted on it
unwrapped and hands their requests to :func:`health_only_app`, which answers
only ``GET /healthz`` and ``GET /readyz`` (status only, no configuration
detail) by asking the worker's own app. A probe is thus answered by a serving
worker, with that worker's readiness; a stuck worker fails it. Which app a
request reaches is decided by the socket the connection was accepted on,
never by anything the client sends.
"""

from __future__ import annotations

import datetime
import gc
import logging
import os
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from provider.config import ServerSettings
from provider.errors import ConfigError
from provider.logs import FIELDS, JsonFormatter
from provider.tlsctx import (
    DEFAULT_RELOAD_CHECK_SECONDS,
    ReloadingServerContext,
    ServerTlsFiles,
    client_dns_names,
    dns_names_allowed,
)
from provider.worker import ConnectionBoard, EventLoopWorker

log = logging.getLogger(__name__)

INSECURE_PLAIN_HTTP_WARNING = (
    "INSECURE: serving plain HTTP without TLS or client authentication (insecurePlainHTTP). Anyone who can "
    "reach this port can ask for verdicts and read them; Gatekeeper itself refuses http:// providers. "
    "Use this only behind a trusted TLS-terminating proxy or for local experiments."
)

WsgiApp = Callable[..., Any]

# What the health listener answers; everything else there is a 404.
HEALTH_PATHS = ("/healthz", "/readyz")


def split_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[V6]:PORT``, or ``:PORT`` for every address) -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - the configured address


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Everything the HTTP server needs, independent of how it was configured."""

    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 2
    threads: int = 4
    keepalive_seconds: int = 5
    # gunicorn replaces a worker whose main loop has been silent this long.
    worker_timeout_seconds: int = 30
    graceful_timeout_seconds: int = 10
    tls: ServerTlsFiles | None = None
    client_dns_names: tuple[str, ...] = ()
    insecure_plain_http: bool = False
    tls_reload_check_seconds: float = DEFAULT_RELOAD_CHECK_SECONDS
    # Upper bound of simultaneous connections per worker (kept-alive included).
    worker_connections: int = 1000
    # An already bound listening socket (``serve`` binds before forking); overrides host/port.
    listen_fd: int | None = None
    # The plain-HTTP probe listener (None: off); see the module docstring.
    health_host: str | None = None
    health_port: int = 0
    health_listen_fd: int | None = None
    log_level: str = "info"
    access_log: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        server: ServerSettings,
        *,
        listen: tuple[str, int] | None = None,
        health_listen: tuple[str, int] | None = None,
    ) -> ServerOptions:
        """Options from the configuration's ``server:`` section (``listen``/``health_listen`` override it)."""
        if listen is None:
            listen = split_listen(server.listen)
        if health_listen is None and server.health_listen:
            health_listen = split_listen(server.health_listen)
        tls = server.tls
        files = None
        if not tls.insecure_plain_http and tls.cert_file and tls.key_file and tls.client_ca_file:
            files = ServerTlsFiles(Path(tls.cert_file), Path(tls.key_file), Path(tls.client_ca_file))
        return cls(
            host=listen[0],
            port=listen[1],
            workers=server.workers,
            threads=server.threads,
            keepalive_seconds=server.keep_alive_seconds,
            tls=files,
            client_dns_names=tuple(tls.client_dns_names),
            insecure_plain_http=tls.insecure_plain_http,
            health_host=health_listen[0] if health_listen else None,
            health_port=health_listen[1] if health_listen else 0,
            access_log=server.access_log,
        )

    @property
    def bind(self) -> str:
        if self.listen_fd is not None:
            return f"fd://{self.listen_fd}"
        return _address(self.host, self.port)

    @property
    def health_bind(self) -> str | None:
        if self.health_host is None:
            return None
        if self.health_listen_fd is not None:
            return f"fd://{self.health_listen_fd}"
        return _address(self.health_host, self.health_port)

    @property
    def scheme(self) -> str:
        return "http" if self.insecure_plain_http else "https"

    def problems(self) -> list[str]:
        out: list[str] = []
        for name in (
            "workers",
            "threads",
            "keepalive_seconds",
            "worker_timeout_seconds",
            "worker_connections",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                out.append(f"server.{name} must be a positive integer, got {value!r}")
        if not 0 <= self.port <= 65535:
            out.append(f"server listen port must be within 0..65535, got {self.port}")
        if self.health_host is not None:
            if not 0 <= self.health_port <= 65535:
                out.append(f"server healthListen port must be within 0..65535, got {self.health_port}")
            elif self.health_port == self.port and self.port != 0:
                out.append(f"server healthListen must use another port than listen, both are {self.port}")
        if self.tls is None and not self.insecure_plain_http:
            out.append(
                "server.tls: certFile, keyFile and clientCAFile are required (or insecurePlainHTTP: true)"
            )
        if self.tls is not None and self.insecure_plain_http:
            out.append("server.tls: insecurePlainHTTP cannot be combined with TLS files")
        return out


class JsonGunicornLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger with JSON lines on stderr for both the error and the access log.

    (gunicorn sends its access log to stdout; stdout is kept for what ``serve`` prints.)
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())
                if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                    handler.setStream(sys.stderr)

    def access(
        self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: datetime.timedelta
    ) -> None:
        if not self.access_log_enabled:
            return
        status = getattr(resp, "status_code", None)
        if status is None:
            status = str(getattr(resp, "status", "")).split(" ", 1)[0]
        self.access_log.info(
            "request",
            extra={
                FIELDS: {
                    "remote": environ.get("REMOTE_ADDR", ""),
                    "remote_port": _port(environ.get("REMOTE_PORT")),
                    # Which worker process answered: connections stay with the one that accepted them.
                    "pid": os.getpid(),
                    "method": environ.get("REQUEST_METHOD", ""),
                    "path": environ.get("PATH_INFO", ""),
                    "status": int(status) if str(status).isdigit() else status,
                    "bytes": getattr(resp, "sent", None),
                    "duration_ms": round(request_time.total_seconds() * 1000, 3),
                }
            },
        )


def _port(value: Any) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


class ProviderWorker(EventLoopWorker):
    """The event-loop worker with the client DNS-name pin and the probe listener.

    ``allowed_client_dns_names`` and ``health_port`` are set on a subclass made
    by :func:`worker_class_for`; an empty pin means none (the CA check still
    applies), a ``health_port`` of None that there is no probe listener.
    """

    allowed_client_dns_names: tuple[str, ...] = ()
    health_port: int | None = None
    wsgi: WsgiApp

    def load_wsgi(self) -> None:
        super().load_wsgi()
        if self.health_port is not None:
            self.wsgi = _by_listener(self.wsgi, health_only_app(self.wsgi))

    def is_health_listener(self, listener: Any) -> bool:
        if self.health_port is None:
            return False
        address = listener.getsockname()
        return isinstance(address, tuple) and len(address) >= 2 and address[1] == self.health_port

    def client_allowed(self, sock: ssl.SSLSocket, client: Any) -> bool:
        if not self.allowed_client_dns_names:
            return True
        presented = client_dns_names(sock.getpeercert())
        if dns_names_allowed(presented, self.allowed_client_dns_names):
            return True
        log.warning(
            "closed connection from %s: client certificate DNS names %s match none of clientDNSNames %s",
            client[0] if client else "?",
            list(presented),
            list(self.allowed_client_dns_names),
        )
        return False

    def request_started(self, conn: Any) -> None:
        # The app is chosen by the socket the connection came in on (see _by_listener).
        _listener.main = not conn.health


# Whether the request on this thread came in on the main listener. Anything that
# does not set it gets the health-only app.
_listener = threading.local()


def _by_listener(main: WsgiApp, health: WsgiApp) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if getattr(_listener, "main", False):
            return main(environ, start_response)  # type: ignore[no-any-return]
        return health(environ, start_response)  # type: ignore[no-any-return]

    return app


def health_only_app(app: WsgiApp) -> WsgiApp:
    """A WSGI app that serves only ``GET /healthz`` and ``GET /readyz`` of ``app``.

    The status code is ``app``'s own; the body is reduced to a status word, so
    the probe port reveals neither the configuration path, nor its generation,
    nor reload errors. Every other method or path is a JSON 404.
    """

    def health(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET" or path not in HEALTH_PATHS:
            return _reply(
                start_response,
                "404 Not Found",
                {"error": "not found: this port serves only GET /healthz and GET /readyz"},
                head=environ.get("REQUEST_METHOD") == "HEAD",
            )
        status = _status_of(app, environ)
        if not status[:3].isdigit():
            status = "500 Internal Server Error"
        if status.startswith("200"):
            word = "ok" if path == "/healthz" else "ready"
        else:
            word = "unavailable" if path == "/healthz" else "not ready"
        return _reply(start_response, status, {"status": word})

    return health


def _status_of(app: WsgiApp, environ: dict[str, Any]) -> str:
    """The status line ``app`` answers ``environ`` with; its body is read and dropped."""
    seen: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], None]:
        seen[:] = [status]
        return lambda data: None

    body = app(environ, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return seen[0] if seen else "500 Internal Server Error"


def _reply(
    start_response: Callable[..., Any], status: str, doc: dict[str, str], *, head: bool = False
) -> list[bytes]:
    body = orjson.dumps(doc)
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    # A response to HEAD has the headers of the GET answer and no body.
    return [] if head else [body]


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def worker_class_for(
    allowed_client_dns_names: tuple[str, ...],
    *,
    health_port: int | None = None,
    board: ConnectionBoard | None = None,
) -> type[ProviderWorker]:
    return type(
        "ProviderWorker",
        (ProviderWorker,),
        {
            "allowed_client_dns_names": tuple(allowed_client_dns_names),
            "health_port": health_port,
            "board": board,
            "__module__": __name__,
        },
    )


class ProviderServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from :class:`ServerOptions`, serving ``app_loader()`` in each worker.

    The application is built in each worker after the fork (no ``preload``):
    caches, thread pools and connections belong to one process each.
    """

    def __init__(self, options: ServerOptions, app_loader: Callable[[], WsgiApp]) -> None:
        problems = options.problems()
        if options.health_host is not None and options.health_listen_fd is None and options.health_port == 0:
            # The worker tells the health socket by its port, so the port must be known before forking.
            problems.append("server healthListen port 0 needs a socket bound beforehand (as serve does)")
        if problems:
            raise ConfigError(problems)
        self.options = options
        self._app_loader = app_loader
        self.tls_context: ReloadingServerContext | None = None
        if options.tls is not None:
            # Built now so that unusable files fail at start-up, before any fork.
            self.tls_context = ReloadingServerContext(
                options.tls, check_interval_seconds=options.tls_reload_check_seconds
            )
        # Shared by the workers forked from here; room for replacements started before the old exit.
        self.board = ConnectionBoard(slots=2 * options.workers + 2)
        super().__init__()

    def gunicorn_settings(self) -> dict[str, Any]:
        o = self.options
        health_bind = o.health_bind
        settings: dict[str, Any] = {
            "bind": [o.bind] if health_bind is None else [o.bind, health_bind],
            "workers": o.workers,
            "threads": o.threads,
            "worker_class": worker_class_for(
                o.client_dns_names if o.tls is not None else (),
                health_port=o.health_port if health_bind is not None else None,
                board=self.board,
            ),
            "worker_connections": o.worker_connections,
            "keepalive": o.keepalive_seconds,
            "timeout": o.worker_timeout_seconds,
            "graceful_timeout": o.graceful_timeout_seconds,
            # Gatekeeper's request is one POST with a handful of headers.
            "limit_request_line": 4094,
            "limit_request_fields": 32,
            "limit_request_field_size": 8190,
            # No proxy in front: nobody may set the scheme or client address through headers
            # (gunicorn would trust 127.0.0.1, or $FORWARDED_ALLOW_IPS).
            "forwarded_allow_ips": "",
            "secure_scheme_headers": {},
            "preload_app": False,
            "proc_name": "manifest-provider",
            "logger_class": JsonGunicornLogger,
            "loglevel": o.log_level,
            "errorlog": "-",
            "accesslog": "-" if o.access_log else None,
            # No control socket in $HOME or $XDG_RUNTIME_DIR: the server is managed by signals.
            "control_socket_disable": True,
        }
        if self.tls_context is not None and o.tls is not None:
            reloading = self.tls_context
            settings.update(
                {
                    # gunicorn needs the file names to switch TLS on; the context comes from the hook.
                    "certfile": str(o.tls.cert_file),
                    "keyfile": str(o.tls.key_file),
                    "ca_certs": str(o.tls.client_ca_file),
                    "cert_reqs": ssl.CERT_REQUIRED,
                    "do_handshake_on_connect": False,
                    "ssl_context": _ssl_context_hook(reloading),
                }
            )
        settings.update(o.extra)
        return settings

    def load_config(self) -> None:
        for key, value in self.gunicorn_settings().items():
            self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        app = self._app_loader()
        # Everything imported and built so far lives as long as the worker. Moving it out of the
        # collector's generations keeps full collections (and the latency spikes they cause)
        # proportional to what requests allocate, not to the size of the libraries loaded.
        gc.collect()
        gc.freeze()
        return app

    def serve(self) -> None:
        if self.options.insecure_plain_http:
            log.warning(INSECURE_PLAIN_HTTP_WARNING)
        self.run()


def _ssl_context_hook(reloading: ReloadingServerContext) -> Callable[[Any, Any], ssl.SSLContext]:
    def ssl_context(config: Any, default_ssl_context_factory: Any) -> ssl.SSLContext:
        # gunicorn's default context would allow TLS 1.2 and ignore rotations.
        return reloading.context()

    return ssl_context

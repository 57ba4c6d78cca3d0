"""TLS for the provider endpoint: TLS 1.3 only, mutual, with certificate reload.

Gatekeeper (Go ``crypto/tls``) calls the provider with a client certificate
issued by Gatekeeper's own CA for the DNS name of its webhook service. The
server context built here:

* accepts TLS 1.3 only (``minimum_version``), so every connection gets
  forward secrecy and the TLS 1.3 cipher suites;
* requires a client certificate that chains to the configured client CA file
  (``CERT_REQUIRED``): a client without one, or with one from another CA,
  fails the handshake and never reaches HTTP;
* sends no session tickets, so every connection does a full handshake with
  a freshly verified client certificate (Gatekeeper does not resume sessions
  anyway: it opens a new connection per call);
* reloads the server certificate, key and client CA when their files change
  (cert-manager and Kubernetes Secret volumes replace files in place), with no
  restart and without disturbing connections already open.

Reloading works from both ends. :meth:`ReloadingServerContext.context` returns
the current context to whoever asks for one per connection (gunicorn's
``ssl_context`` hook does), and every context built here carries an SNI
callback that swaps the connection onto the newest context during the
ClientHello. OpenSSL runs that callback for every ClientHello, with or without
a server name, so a server that keeps one context for all connections still
presents a rotated certificate to the next client.

The optional client DNS-name pin is checked after the handshake by the worker
(:mod:`provider.server`), see :func:`client_dns_names` and
:func:`dns_names_allowed`.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provider.errors import KeyMaterialError

log = logging.getLogger(__name__)

DEFAULT_RELOAD_CHECK_SECONDS = 1.0
_ALPN = ["http/1.1"]


@dataclass(frozen=True, slots=True)
class ServerTlsFiles:
    """The files a mutual-TLS server context is built from."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path

    def paths(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file, self.client_ca_file)


# (device, inode, size, mtime in ns) per file: a replaced file (new inode via
# rename or symlink swap) and an in-place rewrite both change the stamp.
_Stamp = tuple[tuple[int, int, int, int], ...]


def _stamp(paths: Iterable[Path]) -> _Stamp:
    out = []
    for p in paths:
        st = p.stat()
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def build_server_context(
    files: ServerTlsFiles,
    *,
    sni_callback: Callable[[Any, Any, ssl.SSLContext], int | None] | None = None,
) -> ssl.SSLContext:
    """A TLS 1.3-only server context that requires a client certificate.

    Raises :class:`KeyMaterialError` naming the file that could not be used.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # Full handshake (and client certificate verification) on every connection.
    ctx.num_tickets = 0
    ctx.set_alpn_protocols(_ALPN)
    try:
        ctx.load_cert_chain(certfile=files.cert_file, keyfile=files.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise KeyMaterialError(
            f"server certificate {files.cert_file} with key {files.key_file}: expected a readable PEM "
            f"certificate chain and its matching unencrypted key ({exc.__class__.__name__}: {exc})"
        ) from exc
    try:
        ctx.load_verify_locations(cafile=files.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise KeyMaterialError(
            f"client CA file {files.client_ca_file}: expected readable PEM CA certificates "
            f"({exc.__class__.__name__}: {exc})"
        ) from exc
    if not ctx.get_ca_certs():
        raise KeyMaterialError(f"client CA file {files.client_ca_file}: expected CA certificates, found none")
    ctx.verify_mode = ssl.CERT_REQUIRED
    if sni_callback is not None:
        ctx.sni_callback = sni_callback
    return ctx


class ReloadingServerContext:
    """The current server context, rebuilt when its files change.

    The files are stat'ed at most every ``check_interval_seconds``; when any of
    them changed, a new context is built completely before it replaces the old
    one. A half-rotated set (a new certificate whose key has not arrived yet)
    fails to build: the old context stays in service and the next check tries
    again. Thread-safe; each gunicorn worker process holds its own instance.
    """

    def __init__(
        self,
        files: ServerTlsFiles,
        *,
        check_interval_seconds: float = DEFAULT_RELOAD_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._files = files
        self._interval = check_interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = _stamp_or_empty(files.paths())
        self._context = build_server_context(files, sni_callback=self._on_client_hello)
        self._next_check = clock() + check_interval_seconds
        self.reloads = 0

    @property
    def files(self) -> ServerTlsFiles:
        return self._files

    def context(self) -> ssl.SSLContext:
        """The newest context (checking the files if the interval has passed)."""
        if self._clock() >= self._next_check:
            self._maybe_reload()
        return self._context

    def _maybe_reload(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next_check:
                return
            self._next_check = now + self._interval
            stamp = _stamp_or_empty(self._files.paths())
            if stamp == self._stamp or not stamp:
                return
            try:
                fresh = build_server_context(self._files, sni_callback=self._on_client_hello)
            except KeyMaterialError as exc:
                # Probably mid-rotation; keep serving with what worked and retry.
                log.warning(
                    "TLS files changed but cannot be used yet, keeping the previous ones: %s",
                    exc.diagnostics(),
                )
                return
            self._context = fresh
            self._stamp = stamp
            self.reloads += 1
            log.info(
                "reloaded TLS certificate %s and client CA %s",
                self._files.cert_file,
                self._files.client_ca_file,
            )

    def _on_client_hello(self, sock: Any, server_name: Any, ctx: ssl.SSLContext) -> None:
        # ``sock`` is the SSLObject/SSLSocket in its handshake; ``server_name`` is None without SNI.
        try:
            current = self.context()
            if current is not ctx:
                sock.context = current
        except Exception:  # an exception here would abort the handshake with an opaque alert
            log.exception("TLS context reload check failed; continuing with the context in use")


def _stamp_or_empty(paths: Iterable[Path]) -> _Stamp:
    try:
        return _stamp(paths)
    except OSError as exc:
        log.warning("cannot stat TLS file %s: %s", exc.filename, exc.strerror)
        return ()


def client_dns_names(peer_cert: Mapping[str, Any] | None) -> tuple[str, ...]:
    """DNS names of the subject alternative names of ``SSLSocket.getpeercert()``."""
    if not peer_cert:
        return ()
    san = peer_cert.get("subjectAltName", ())
    return tuple(str(value) for kind, value in san if kind == "DNS")


def dns_names_allowed(presented: Sequence[str], allowed: Sequence[str]) -> bool:
    """Whether any presented DNS name is one of the allowed names (exact, case-insensitive).

    An empty ``allowed`` means no pin: any certificate from the client CA is accepted.
    """
    if not allowed:
        return True
    wanted = {a.rstrip(".").lower() for a in allowed}
    return any(p.rstrip(".").lower() in wanted for p in presented)

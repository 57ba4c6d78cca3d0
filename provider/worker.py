"""The provider's gunicorn worker: a few event loops, each owning its connections.

gunicorn's ``gthread`` worker hands every request across threads twice: its
main thread polls the sockets, gives a readable connection to a thread pool,
and takes it back through a pipe when the response is written, flipping the
socket between blocking and non-blocking and re-registering it each time.
For the provider's requests (a warm verdict takes tens of microseconds) that
round trip, its system calls and the GIL hand-offs it forces are most of the
cost, and the order in which the main thread gets the GIL back makes the
latency of some connections much worse than the average.

:class:`EventLoopWorker` keeps gunicorn (the arbiter, its signals, its HTTP
parser, its WSGI environment and responses) and changes only the dispatch:

* the main thread accepts, one connection per wake-up, leaving it to another
  worker process that holds fewer connections (:class:`ConnectionBoard`),
  and gives it to the first of ``threads`` loops that is not inside a long
  request: under CPU-bound load one loop per process serves everything, as
  threads of one process only take turns on the GIL, and the other loops
  take new connections while the first waits on the network;
* a loop thread owns its connections until they close: it runs the TLS
  handshake and reads requests without blocking, and only when a whole
  request has arrived (head and, up to :data:`BUFFERED_BODY_BYTES`, body)
  does it parse it and call the application, in the same thread;
* kept-alive connections stay registered with their loop between requests.

A client that connects and stalls (no ClientHello, half a request) therefore
costs a buffer and a timer, never a thread. The application is called inline,
so a slow request holds the other connections of its loop; the provider
bounds every request by its internal deadline, and new connections go to
another loop meanwhile. The main thread tells the arbiter the worker is
alive only while every loop comes back to its event wait within the worker
timeout; a loop stuck in a request longer than that gets the worker replaced.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import multiprocessing
import os
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gunicorn import http, util
from gunicorn import sock as gsock
from gunicorn.http import wsgi
from gunicorn.workers import base

# Body bytes read without blocking before the request is parsed; a longer body
# (a batch of many keys) is read by the parser, blocking with READ_TIMEOUT_SECONDS.
BUFFERED_BODY_BYTES = 256 * 1024
# A request head larger than this is handed to the parser, which rejects it.
MAX_HEAD_BYTES = 64 * 1024
# Time allowed for a TLS handshake, and for the rest of a request once its first byte came.
READ_TIMEOUT_SECONDS = 10.0
# Time a loop may spend away from its event wait before the worker stops reporting alive,
# as a fraction of gunicorn's worker timeout.
_STUCK_FRACTION = 0.8
# After SIGTERM, kept-alive connections are closed after at most this long.
STOP_KEEPALIVE_LINGER = 2.0
# A loop inside one request for longer than this gets no new connections while another does not.
BUSY_LOOP_SECONDS = 0.05
# Connections past their deadline are closed within this long.
SWEEP_SECONDS = 0.05
# How long a worker holding more connections than another leaves a new one to it.
ACCEPT_YIELD_SECONDS = 0.010
_RECV = 64 * 1024
_SEND = 256 * 1024
# Most body bytes the app left unread that are drained to keep a connection; past it, it closes.
_DRAIN_BYTES = 64 * 1024


class ConnectionBoard:
    """How many connections each worker process holds, in memory shared by the arbiter's children.

    Kept-alive connections stay with the process that accepted them, so a
    burst of new connections split unevenly between workers stays uneven: the
    clients of the fuller process wait longer for as long as they stay
    connected. Each worker publishes its count here, and a worker holding more
    than another lets that one take the next connection (for at most
    :data:`ACCEPT_YIELD_SECONDS`, so a stuck or stale neighbour cannot stop
    accepting). Made by the arbiter before it forks; each worker claims a
    slot, reclaiming those of processes that are gone.
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, slots * 8)
        self._cells = memoryview(self._memory).cast("i")  # pid, count per slot
        self._lock = multiprocessing.get_context("fork").Lock()
        self._slot = -1

    def claim(self) -> None:
        """Take a slot for this process (after the fork)."""
        with self._lock:
            for slot in range(self.slots):
                pid = self._cells[2 * slot]
                if pid == 0 or not _process_exists(pid):
                    self._cells[2 * slot] = os.getpid()
                    self._cells[2 * slot + 1] = 0
                    self._slot = slot
                    return

    def release(self) -> None:
        if self._slot >= 0:
            with self._lock:
                self._cells[2 * self._slot + 1] = 0
                self._cells[2 * self._slot] = 0
            self._slot = -1

    def publish(self, count: int) -> None:
        if self._slot >= 0:
            self._cells[2 * self._slot + 1] = count

    def fewest_elsewhere(self) -> int | None:
        """The smallest count published by another live worker; None when there is none.

        A worker that died without releasing its slot keeps its last count there
        until a new worker reclaims the slot; it must not count meanwhile, or
        the others would keep leaving connections to a process that is gone.
        """
        fewest: int | None = None
        for slot in range(self.slots):
            pid = self._cells[2 * slot]
            if slot != self._slot and pid and _process_exists(pid):
                count = self._cells[2 * slot + 1]
                fewest = count if fewest is None else min(fewest, count)
        return fewest


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class BoundedSocket:
    """A connection's socket as gunicorn's parser and response see it: no read or write runs long.

    Each blocking read ends by :attr:`deadline` (when the request began plus
    :data:`READ_TIMEOUT_SECONDS`), however slowly the client trickles bytes, and
    each write must be done within :data:`READ_TIMEOUT_SECONDS` of its start,
    however slowly the client reads. A per-call socket timeout alone would let
    a client that sends or reads a byte every few seconds hold a loop forever.
    """

    __slots__ = ("deadline", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.deadline = 0.0

    def _until(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the client took too long")
        self.sock.settimeout(left)

    def recv(self, size: int) -> bytes:
        self._until(self.deadline)
        data: bytes = self.sock.recv(size)
        return data

    def send(self, data: bytes) -> int:
        self._until(time.monotonic() + READ_TIMEOUT_SECONDS)
        sent: int = self.sock.send(data)
        return sent

    def sendall(self, data: bytes) -> None:
        deadline = time.monotonic() + READ_TIMEOUT_SECONDS
        view = memoryview(data)
        while view:
            self._until(deadline)
            view = view[self.sock.send(view[:_SEND]) :]


class _Conn:
    """One client connection, owned by one loop.

    ``parser`` and ``bounded`` (the socket as the parser and the responses see
    it) are made once the socket is final, after the TLS wrap.
    """

    bounded: BoundedSocket

    __slots__ = (
        "bounded",
        "buffer",
        "client",
        "deadline",
        "fd",
        "handshaking",
        "health",
        "parser",
        "server",
        "sock",
    )

    def __init__(self, sock: socket.socket, client: Any, server: Any, *, health: bool) -> None:
        self.sock: Any = sock
        self.client = client
        self.server = server
        self.health = health
        self.handshaking = False
        self.parser: Any = None
        self.buffer = bytearray()
        self.deadline = 0.0
        self.fd = -1


def request_complete(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds a request head and enough of its body to parse without waiting.

    Only framing is looked at here; the parser validates everything. A head
    that cannot be framed (no or bad length, oversized) counts as complete so
    the parser can reject it.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > MAX_HEAD_BYTES
    body = len(data) - end - 4
    if body >= BUFFERED_BODY_BYTES:
        return True
    length: int | None = None
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"expect":
            # The client waits for "100 Continue" before it sends the body; the parser answers it.
            return True
        if name == b"transfer-encoding":
            # Chunked: complete once the last chunk is in (or the parser sorts it out).
            return data.endswith(b"0\r\n\r\n")
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or (length is not None and length != int(value)):
                return True
            length = int(value)
    return body >= (length or 0)


class _Loop(threading.Thread):
    """An event loop serving the connections given to it by :meth:`assign`."""

    def __init__(self, worker: EventLoopWorker, index: int) -> None:
        super().__init__(name=f"loop-{index}", daemon=True)
        self.worker = worker
        self.selector = selectors.DefaultSelector()
        self.inbox: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.connections = 0
        # When the loop last came back to its event wait; 0.0 while it waits.
        self.busy_since = 0.0
        self.stopping = False
        # Connections with a whole request buffered, served on the next turn.
        self.ready: deque[_Conn] = deque()

    # -- called from the main thread --------------------------------------------------------

    def assign(self, conn: _Conn) -> None:
        self.connections += 1
        self.inbox.put(conn)
        self.wake()

    def wake(self) -> None:
        # A full pipe means the loop has wake-ups pending already.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def stuck_for(self, now: float) -> float:
        started = self.busy_since
        return now - started if started else 0.0

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        conns: dict[int, _Conn] = {}
        linger_until = 0.0
        next_sweep = 0.0
        while True:
            now = time.monotonic()
            if self.stopping and not linger_until:
                linger_until = now + STOP_KEEPALIVE_LINGER
            if linger_until and (not conns or now >= linger_until):
                break
            if now >= next_sweep:
                self._expire(conns, now)
                # Deadlines are seconds away; sweeping at most every SWEEP_SECONDS keeps the
                # cost of many idle connections off the path of every request.
                earliest = min((c.deadline for c in conns.values()), default=now + 1.0)
                next_sweep = min(max(earliest, now + SWEEP_SECONDS), now + 1.0)
            timeout = 0.0 if self.ready else max(0.0, next_sweep - now)
            self.busy_since = 0.0
            events = self.selector.select(timeout)
            self.busy_since = time.monotonic()
            for key, _ in events:
                conn = key.data
                if conn is None:
                    self._take_new(conns)
                else:
                    self._on_readable(conn, conns)
            for _ in range(len(self.ready)):
                conn = self.ready.popleft()
                if conns.get(conn.fd) is conn:
                    self._on_readable(conn, conns, readable=False)
        for conn in list(conns.values()):
            self._close(conn, conns)
        self.selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _take_new(self, conns: dict[int, _Conn]) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        while True:
            try:
                conn = self.inbox.get_nowait()
            except queue.Empty:
                return
            cfg = self.worker.cfg
            try:
                conn.sock.setblocking(False)
                if cfg.is_ssl and not conn.health:
                    # The handshake is driven by the loop, never blocking (see _handshake).
                    conn.sock = gsock.ssl_context(cfg).wrap_socket(
                        conn.sock,
                        server_side=True,
                        suppress_ragged_eofs=cfg.suppress_ragged_eofs,
                        do_handshake_on_connect=False,
                    )
                    conn.handshaking = True
                conn.parser = None if conn.handshaking else self._parser(conn)
                conn.deadline = time.monotonic() + READ_TIMEOUT_SECONDS
                conn.fd = conn.sock.fileno()
                conns[conn.fd] = conn
                self.selector.register(conn.sock, selectors.EVENT_READ, conn)
            except (OSError, ValueError):
                self.connections -= 1
                util.close(conn.sock)

    def _parser(self, conn: _Conn) -> Any:
        conn.bounded = BoundedSocket(conn.sock)
        return http.get_parser(self.worker.cfg, conn.bounded, conn.client)

    def _on_readable(self, conn: _Conn, conns: dict[int, _Conn], *, readable: bool = True) -> None:
        """Take what arrived on ``conn`` (unless it only has a request buffered) and answer one request."""
        try:
            if readable:
                if conn.handshaking and not self._handshake(conn):
                    return
                self._read(conn)
            self._serve_one(conn)
        except _Closed:
            self._close(conn, conns)
        except Exception:
            self.worker.log.exception("error on a connection; closing it")
            self._close(conn, conns)

    def _serve_one(self, conn: _Conn) -> None:
        """Answer at most one buffered request of ``conn``.

        One per turn: a client that sends its next request as soon as it has
        an answer would otherwise keep the loop to itself. A request already
        buffered behind it (pipelined) waits in :attr:`ready` for the next turn.
        """
        if not request_complete(conn.buffer):
            return
        if not self._serve(conn):
            raise _Closed
        if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
            # Decrypted bytes held by OpenSSL do not make the socket readable.
            self._read(conn)
        if request_complete(conn.buffer):
            self.ready.append(conn)

    def _handshake(self, conn: _Conn) -> bool:
        """Advance the TLS handshake; True once it is done and the client is allowed."""
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLWantWriteError:
            # The server's flight did not fit the socket buffer: finish it blocking, briefly.
            conn.sock.settimeout(READ_TIMEOUT_SECONDS)
            try:
                conn.sock.do_handshake()
            except (OSError, ValueError) as exc:
                raise _Closed from exc
            conn.sock.setblocking(False)
        except (OSError, ValueError) as exc:
            self.worker.log.debug("TLS handshake failed: %s", exc)
            raise _Closed from exc
        conn.handshaking = False
        if not self.worker.client_allowed(conn.sock, conn.client):
            raise _Closed
        conn.parser = self._parser(conn)
        conn.deadline = time.monotonic() + self.worker.cfg.keepalive
        return True

    def _read(self, conn: _Conn) -> None:
        """Move what arrived into the connection's buffer, without waiting for more."""
        while True:
            try:
                data = conn.sock.recv(_RECV)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return
            except (OSError, ValueError) as exc:
                raise _Closed from exc
            if not data:
                raise _Closed
            if not conn.buffer:
                conn.deadline = time.monotonic() + READ_TIMEOUT_SECONDS
            conn.buffer += data
            if len(conn.buffer) > BUFFERED_BODY_BYTES + MAX_HEAD_BYTES:
                return

    def _serve(self, conn: _Conn) -> bool:
        """Parse and answer the buffered request; True to keep the connection."""
        parser = conn.parser
        parser.unreader.unread(bytes(conn.buffer))
        conn.buffer.clear()
        # The rest of a long body, if any, must arrive by the deadline the request's first byte set.
        conn.bounded.deadline = conn.deadline
        keep = False
        req = None
        try:
            req = next(parser)
            keep = bool(req) and self.worker.handle_request(req, conn)
            if keep:
                conn.bounded.deadline = time.monotonic() + READ_TIMEOUT_SECONDS
                keep = bool(parser.finish_body(max_bytes=_DRAIN_BYTES))
        except (StopIteration, http.errors.NoMoreData):
            keep = False
        except ssl.SSLError as exc:
            if exc.args[0] != ssl.SSL_ERROR_EOF:
                self.worker.handle_error(req, conn.sock, conn.client, exc)
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.worker.log.exception("socket error while serving a request")
        except Exception as exc:
            self.worker.handle_error(req, conn.sock, conn.client, exc)
        if not keep:
            return False
        # Bytes the parser read past this request (a pipelined next one) come back to the buffer.
        conn.buffer += parser.unreader.take_buffered()
        conn.sock.setblocking(False)
        conn.deadline = time.monotonic() + self.worker.cfg.keepalive
        return not self.stopping

    def _expire(self, conns: dict[int, _Conn], now: float) -> None:
        for conn in [c for c in conns.values() if c.deadline <= now]:
            self._close(conn, conns)

    def _close(self, conn: _Conn, conns: dict[int, _Conn]) -> None:
        if conns.get(conn.fd) is conn:
            del conns[conn.fd]
            self.connections -= 1
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(conn.sock)
        util.close(conn.sock)


class _Capture:
    """A stand-in socket that keeps what is written to it."""

    def __init__(self) -> None:
        self.data = b""

    def sendall(self, data: bytes) -> None:
        self.data += data


class OneWriteResponse(wsgi.Response):  # type: ignore[misc]
    """gunicorn's response, with the head sent together with the first body bytes.

    gunicorn writes the status line and headers, then the body, separately: two
    TLS records and two system calls for an answer that fits in one. It also
    drops an application's ``Connection: close`` as a hop-by-hop header; here
    it closes the connection after the answer (the app leaves a body unread).
    """

    _head = b""
    sock: Any

    def process_headers(self, headers: list[tuple[str, str]]) -> None:
        super().process_headers(headers)
        if any(name.lower() == "connection" and value.strip().lower() == "close" for name, value in headers):
            self.force_close()

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        sock = self.sock
        capture = self.sock = _Capture()
        try:
            super().send_headers()
        finally:
            self._head, self.sock = capture.data, sock

    def _emit_body(self, data: bytes) -> None:
        if self._head and not self.chunked:
            data, self._head = self._head + data, b""
        self._flush_head()
        super()._emit_body(data)

    def _flush_head(self) -> None:
        if self._head:
            head, self._head = self._head, b""
            util.write(self.sock, head)

    def close(self) -> None:
        self.send_headers()
        self._flush_head()
        super().close()


class _Closed(Exception):
    """The connection is done (closed by the peer, broken, or refused)."""


class EventLoopWorker(base.Worker):  # type: ignore[misc]
    """A gunicorn worker serving HTTP/1.1 from ``cfg.threads`` event loops (see the module docstring)."""

    loops: list[_Loop]
    alive: bool
    # The write end of the pipe that wakes the main thread on SIGTERM (None outside run()).
    _stop_w: int | None = None
    # Shared with the other workers of the arbiter; None: each worker accepts on its own.
    board: ConnectionBoard | None = None

    # Hooks for subclasses -------------------------------------------------------------------

    def client_allowed(self, sock: ssl.SSLSocket, client: Any) -> bool:
        """Called once a TLS handshake is done; False closes the connection."""
        return True

    def is_health_listener(self, listener: Any) -> bool:
        """Connections from this listener are served without TLS."""
        return False

    def request_started(self, conn: _Conn) -> None:
        """Called in the loop thread before the application sees a request of ``conn``."""

    # gunicorn's worker interface -------------------------------------------------------------

    def run(self) -> None:
        self.loops = [_Loop(self, i) for i in range(max(1, self.cfg.threads))]
        for loop in self.loops:
            loop.start()
        selector = selectors.DefaultSelector()
        for listener in self.sockets:
            listener.setblocking(False)
            selector.register(listener, selectors.EVENT_READ, listener)
        # SIGTERM ends the wait at once (see handle_exit) rather than at its next timeout.
        self._stop_r, self._stop_w = os.pipe()
        os.set_blocking(self._stop_w, False)
        selector.register(self._stop_r, selectors.EVENT_READ, None)
        accepting = True
        stuck_after = max(1.0, self.cfg.timeout * _STUCK_FRACTION)
        if self.board is not None:
            self.board.claim()
        self._yielding_since = 0.0
        try:
            while self.alive:
                now = time.monotonic()
                if all(loop.stuck_for(now) < stuck_after and loop.is_alive() for loop in self.loops):
                    self.notify()
                held = sum(loop.connections for loop in self.loops)
                if self.board is not None:
                    self.board.publish(held)
                full = held >= self.cfg.worker_connections
                if full == accepting:
                    accepting = not full
                    for listener in self.sockets:
                        if accepting:
                            selector.register(listener, selectors.EVENT_READ, listener)
                        else:
                            selector.unregister(listener)
                for key, _ in selector.select(1.0 if accepting else 0.05):
                    if key.data is None:
                        continue  # woken to stop
                    if self._yield_to_another(held):
                        time.sleep(ACCEPT_YIELD_SECONDS / 8)
                        break
                    self._accept(key.data)
                if self.ppid != os.getppid():
                    self.log.info("Parent changed, shutting down: %s", self)
                    break
        finally:
            selector.close()
            stop_w, self._stop_w = self._stop_w, None
            os.close(stop_w)
            os.close(self._stop_r)
            if self.board is not None:
                self.board.release()
        self._stop_loops()

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        stop = self._stop_w
        if stop is not None:
            with contextlib.suppress(OSError):
                os.write(stop, b"\0")

    def _yield_to_another(self, held: int) -> bool:
        """Whether to leave the pending connection to a worker holding fewer (see ConnectionBoard)."""
        fewest = self.board.fewest_elsewhere() if self.board is not None else None
        if fewest is None or held <= fewest:
            self._yielding_since = 0.0
            return False
        now = time.monotonic()
        if not self._yielding_since:
            self._yielding_since = now
        if now - self._yielding_since < ACCEPT_YIELD_SECONDS:
            return True
        self._yielding_since = 0.0
        return False

    def _accept(self, listener: Any) -> None:
        # One connection per wake-up: the other worker processes, woken by the same
        # readiness, take their share of a burst instead of this one taking it all.
        try:
            sock, client = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS):
                return
            raise
        conn = _Conn(sock, client, listener.getsockname(), health=self.is_health_listener(listener))
        now = time.monotonic()
        loop = next((lp for lp in self.loops if lp.stuck_for(now) < BUSY_LOOP_SECONDS), None)
        if loop is None:
            loop = min(self.loops, key=lambda lp: -lp.stuck_for(now))
        loop.assign(conn)

    def _stop_loops(self) -> None:
        for listener in self.sockets:
            listener.close()
        for loop in self.loops:
            loop.stopping = True
            loop.wake()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for loop in self.loops:
            loop.join(max(0.0, deadline - time.monotonic()))

    def handle_request(self, req: Any, conn: _Conn) -> bool:
        """Answer one parsed request; True when the connection may serve another."""
        # Timed only for the access log: two clock reads per request otherwise wasted.
        started = datetime.now() if self.log.access_log_enabled else None
        resp, environ = wsgi.create(
            req, conn.bounded, conn.client, conn.server, self.cfg, response_class=OneWriteResponse
        )
        environ["wsgi.multithread"] = True
        self.nr += 1
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        if not self.alive or not self.cfg.keepalive:
            resp.force_close()
        self.request_started(conn)
        app: Callable[..., Any] = self.wsgi
        try:
            body = app(environ, resp.start_response)
            try:
                for item in body:
                    resp.write(item)
                resp.close()
            finally:
                if started is not None:
                    self.log.access(resp, req, environ, datetime.now() - started)
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        except OSError:
            raise
        except Exception:
            if resp.headers_sent:
                # Half an answer is out: the only honest thing left is to close.
                self.log.exception("Error handling request")
                return False
            raise
        return not resp.should_close()

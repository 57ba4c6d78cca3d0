"""The event-loop worker (``provider/worker.py``) under the real gunicorn, over mutual TLS 1.3.

Most tests run one worker with one event loop, so every connection shares a
single thread: whatever one client does to that thread, the others would feel.
"""

from __future__ import annotations

import contextlib
import http.client
import multiprocessing
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from provider.wire import encode_key, encode_request
from provider.worker import BoundedSocket, ConnectionBoard, request_complete
from tests.providerproc import ProviderProcess, content_length, run_provider

EMPTY = encode_request([])


def _request(body: bytes = EMPTY, *, extra: bytes = b"") -> bytes:
    head = (
        b"POST /validate HTTP/1.1\r\nHost: provider\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    return head + body


@pytest.fixture(scope="module")
def one_loop(tmp_path_factory: pytest.TempPathFactory, key_a_pub: bytes) -> Iterator[ProviderProcess]:
    with run_provider(
        tmp_path_factory.mktemp("one-loop"),
        keys={"a": key_a_pub},
        workers=1,
        threads=1,
        config={"server": {"accessLog": True}},
    ) as proc:
        yield proc


def _tls(proc: ProviderProcess) -> ssl.SSLSocket:
    raw = socket.create_connection((proc.host, proc.port), timeout=10)
    return proc.client_context().wrap_socket(raw, server_hostname="localhost")


def _responses(sock: ssl.SSLSocket, count: int) -> list[bytes]:
    """Read ``count`` whole responses (framed by Content-Length)."""
    data = b""
    out: list[bytes] = []
    while len(out) < count:
        head, sep, rest = data.partition(b"\r\n\r\n")
        length = content_length(head) if sep else None
        if length is not None and len(rest) >= length:
            out.append(head + sep + rest[:length])
            data = rest[length:]
            continue
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {len(out)} responses")
        data += chunk
    return out


def _answered_quickly(proc: ProviderProcess) -> float:
    started = time.monotonic()
    answer = proc.ask([])
    assert answer["response"]["systemError"] == ""
    return time.monotonic() - started


def test_a_client_that_connects_and_says_nothing_holds_no_one_up(one_loop: ProviderProcess) -> None:
    with socket.create_connection((one_loop.host, one_loop.port), timeout=10):
        # TCP is up, no ClientHello: the handshake waits on the loop, not in it.
        assert _answered_quickly(one_loop) < 2.0


def test_half_a_tls_handshake_holds_no_one_up(one_loop: ProviderProcess) -> None:
    with socket.create_connection((one_loop.host, one_loop.port), timeout=10) as raw:
        # The first bytes of a TLS 1.x record header of a ClientHello, then silence.
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01")
        assert _answered_quickly(one_loop) < 2.0


def test_half_a_request_holds_no_one_up_and_is_answered_when_complete(one_loop: ProviderProcess) -> None:
    request = _request()
    with _tls(one_loop) as slow:
        slow.sendall(request[:40])
        assert _answered_quickly(one_loop) < 2.0
        slow.sendall(request[40:-10])
        assert _answered_quickly(one_loop) < 2.0
        slow.sendall(request[-10:])
        (response,) = _responses(slow, 1)
    assert response.startswith(b"HTTP/1.1 200")
    assert orjson.loads(response.partition(b"\r\n\r\n")[2])["response"]["systemError"] == ""


def test_a_large_body_in_pieces_is_read_whole(one_loop: ProviderProcess) -> None:
    """More than the worker buffers before parsing: the parser reads the rest."""
    body = encode_request(["x" * 600_000])
    with _tls(one_loop) as sock:
        request = _request(body)
        for start in range(0, len(request), 100_000):
            sock.sendall(request[start : start + 100_000])
            time.sleep(0.01)
        (response,) = _responses(sock, 1)
    items = orjson.loads(response.partition(b"\r\n\r\n")[2])["response"]["items"]
    assert len(items) == 1 and "not valid JSON" in items[0]["error"]


def test_pipelined_requests_are_answered_in_order(one_loop: ProviderProcess) -> None:
    bodies = [encode_request([f"not json {i}"]) for i in range(5)]
    with _tls(one_loop) as sock:
        sock.sendall(b"".join(_request(b) for b in bodies))
        responses = _responses(sock, 5)
    keys = [orjson.loads(r.partition(b"\r\n\r\n")[2])["response"]["items"][0]["key"] for r in responses]
    assert keys == [f"not json {i}" for i in range(5)]


def test_expect_100_continue_is_answered_before_the_body(one_loop: ProviderProcess) -> None:
    """A client that waits for "100 Continue" before sending its body (curl does, for large ones)."""
    head, _, body = _request(extra=b"Expect: 100-continue\r\n").partition(b"\r\n\r\n")
    with _tls(one_loop) as sock:
        sock.sendall(head + b"\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (response,) = _responses(sock, 1)
    assert response.startswith(b"HTTP/1.1 200")
    assert orjson.loads(response.partition(b"\r\n\r\n")[2])["response"]["systemError"] == ""


def test_the_answer_leaves_in_one_write(one_loop: ProviderProcess) -> None:
    """Status line, headers and body arrive together (one TLS record), not head first."""
    with _tls(one_loop) as sock:
        sock.sendall(_request())
        first = sock.recv(65536)
    head, sep, body = first.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200")
    assert orjson.loads(body)["response"]["systemError"] == ""


def test_a_partial_request_is_dropped_after_the_read_timeout(one_loop: ProviderProcess) -> None:
    """The timer of a started request is not renewed by trickling bytes (10 s here)."""
    with _tls(one_loop) as sock:
        sock.settimeout(20)
        started = time.monotonic()
        request = _request()
        for i in range(30):
            try:
                sock.sendall(request[i : i + 1])
            except OSError:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the server kept a trickling request open for 15 s")
        assert 8 <= time.monotonic() - started <= 14


# -- several workers ------------------------------------------------------------------------


def _served_by(proc: ProviderProcess, ports: set[int]) -> Counter[int]:
    """How many of the connections from ``ports`` each worker (by pid) answered, from the access log."""
    lines = [orjson.loads(line) for line in proc.logs().splitlines() if line.startswith("{")]
    return Counter(
        r["pid"]
        for r in lines
        if r.get("logger") == "gunicorn.access"
        and r.get("path") == "/validate"
        and r.get("remote_port") in ports
    )


def _connect_and_ask(proc: ProviderProcess) -> ssl.SSLSocket:
    sock = _tls(proc)
    sock.sendall(_request())
    _responses(sock, 1)
    return sock


def test_connections_are_spread_over_the_workers(tmp_path: Path, key_a_pub: bytes) -> None:
    """20 clients connecting at once and staying: each of two workers gets its share.

    Without the shared connection board, whichever worker wakes first takes
    most of such a burst (20:0 and 14:6 were seen here).
    """
    with run_provider(
        tmp_path, keys={"a": key_a_pub}, workers=2, threads=2, config={"server": {"accessLog": True}}
    ) as proc:
        # Both workers must be past start-up (accepting) before the burst.
        deadline = time.monotonic() + 30
        while True:
            probe = _connect_and_ask(proc)
            probe.close()
            time.sleep(0.05)
            if len(_served_by(proc, set(range(65536)))) == 2 or time.monotonic() > deadline:
                break
        with ThreadPoolExecutor(20) as pool:
            held = list(pool.map(lambda _: _connect_and_ask(proc), range(20)))
        time.sleep(0.5)
        by_pid = _served_by(proc, {sock.getsockname()[1] for sock in held})
        for sock in held:
            sock.close()
    assert len(by_pid) == 2, by_pid
    assert sum(by_pid.values()) == 20
    assert min(by_pid.values()) >= 6, by_pid


def _claim_and_publish(board: ConnectionBoard, count: int, ready: Any) -> None:
    board.claim()
    board.publish(count)
    ready.set()
    time.sleep(30)


def test_connection_board_is_shared_across_forks_and_reclaims_dead_slots() -> None:
    ctx = multiprocessing.get_context("fork")
    board = ConnectionBoard(slots=2)
    ready = ctx.Event()
    other = ctx.Process(target=_claim_and_publish, args=(board, 5, ready))
    other.start()
    try:
        assert ready.wait(10)
        board.claim()
        board.publish(3)
        assert board.fewest_elsewhere() == 5
    finally:
        other.kill()
        other.join()
    # The other process is gone without releasing its slot: its count no longer counts...
    assert board.fewest_elsewhere() is None
    # ...and a newcomer takes the slot over.
    newcomer_ready = ctx.Event()
    newcomer = ctx.Process(target=_claim_and_publish, args=(board, 1, newcomer_ready))
    newcomer.start()
    try:
        assert newcomer_ready.wait(10)
        assert board.fewest_elsewhere() == 1
    finally:
        newcomer.kill()
        newcomer.join()


@pytest.mark.parametrize(
    ("data", "complete"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc", False),
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", True),
        (b"POST / HTTP/1.1\r\nHost: x\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\ncontent-length: +5\r\n\r\n", True),  # unframeable: the parser rejects it
        (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n", False),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", True),
        (b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", True),
        (b"X" * (64 * 1024 + 1), True),  # a head that never ends: the parser rejects it
    ],
)
def test_request_framing(data: bytes, complete: bool) -> None:
    assert request_complete(data) is complete


def test_a_request_held_by_a_registry_does_not_hold_new_connections(tmp_path: Path, key_a_pub: bytes) -> None:
    """A loop waiting on a registry gets no new connections; another loop answers them.

    The "registry" is a real socket on loopback that accepts and never answers,
    so the check of a key referring to it lasts until the provider's deadline.
    """
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        where = f"127.0.0.1:{blackhole.getsockname()[1]}"
        config = {"registries": {"allow": [f"{where}/*"], "insecure": [where], "readTimeoutSeconds": 3}}
        with run_provider(tmp_path, keys={"a": key_a_pub}, workers=1, threads=2, config=config) as proc:
            held = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "held",
                    "namespace": "team-a",
                    "annotations": {"cosign.sigstore.dev/resourceBundleRef": f"{where}/bundles/app:v1"},
                },
                "data": {"k": "v"},
            }
            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(proc.ask, [encode_key(held)])
                time.sleep(0.5)
                assert not slow.done()
                assert _answered_quickly(proc) < 1.0
                answer = slow.result(timeout=30)
    assert answer["response"]["items"] == []
    assert "deadline" in answer["response"]["systemError"]


def test_a_large_body_trickled_in_is_cut_at_the_read_deadline(one_loop: ProviderProcess) -> None:
    """Past the bytes the loop buffers, the rest is read blocking, but only until 10 s after the first byte."""
    head = (
        _request(b"", extra=b"")
        .partition(b"\r\n\r\n")[0]
        .replace(b"Content-Length: 0", b"Content-Length: 1000000")
    )
    with _tls(one_loop) as sock:
        sock.settimeout(20)
        started = time.monotonic()
        sock.sendall(head + b"\r\n\r\n" + b" " * 300_000)
        sock.setblocking(False)
        answer = b""
        while time.monotonic() - started < 16 and b"\r\n\r\n" not in answer:
            with contextlib.suppress(ssl.SSLWantWriteError, BlockingIOError, OSError):
                sock.sendall(b" ")
            time.sleep(0.5)
            with contextlib.suppress(ssl.SSLWantReadError, BlockingIOError):
                answer += sock.recv(65536)
        elapsed = time.monotonic() - started
    assert b"\r\n\r\n" in answer, answer
    assert 8 <= elapsed <= 14
    assert b"Connection: close" in answer.partition(b"\r\n\r\n")[0]
    assert "could not be read" in orjson.loads(answer.partition(b"\r\n\r\n")[2])["response"]["systemError"]


def test_bounded_socket_ends_trickling_reads_and_stalled_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from provider import worker

    monkeypatch.setattr(worker, "READ_TIMEOUT_SECONDS", 0.5)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        bounded = BoundedSocket(ours)
        bounded.deadline = time.monotonic() + 0.5
        received = b""
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            while True:
                theirs.send(b"x")  # a byte now and then: each read gets one, the deadline still ends it
                received += bounded.recv(1024)
                time.sleep(0.05)
        assert received and 0.4 <= time.monotonic() - started <= 1.5
        # The peer reads nothing: the write stops once the buffers are full and the time is up.
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            bounded.sendall(b"y" * 50_000_000)
        assert 0.4 <= time.monotonic() - started <= 1.5


def test_a_malformed_request_gets_400_and_the_loop_serves_on(one_loop: ProviderProcess) -> None:
    with _tls(one_loop) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 Bad Request")
    assert _answered_quickly(one_loop) < 2.0


def test_sigterm_stops_an_idle_server_promptly(tmp_path: Path, key_a_pub: bytes) -> None:
    """The worker's accept wait is woken by SIGTERM, not left to its 1 s timeout (1.3 s before)."""
    with run_provider(tmp_path, keys={"a": key_a_pub}, workers=2, threads=2) as proc:
        assert proc.ask([])["response"]["systemError"] == ""
        started = time.monotonic()
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(30) == 0
        assert time.monotonic() - started < 1.0


_HANGING_SERVER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from provider.server import ProviderServer, ServerOptions

def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        time.sleep(120)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]

options = ServerOptions(
    listen_fd=int(sys.argv[1]), insecure_plain_http=True, workers=1, threads=2, worker_timeout_seconds=2
)
ProviderServer(options, lambda: app).serve()
"""


def _worker_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _get(port: int, path: str, timeout: float) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_loop_stuck_in_a_request_gets_its_worker_replaced(tmp_path: Path) -> None:
    """The main thread stops reporting the worker alive, so gunicorn's arbiter replaces it.

    The app here is a stand-in that never returns from ``/hang`` (the
    provider's own requests are bounded by its deadline); the worker timeout
    is 2 s. A plain listening socket is handed to the server, as ``serve`` does.
    """
    script = tmp_path / "hanging.py"
    script.write_text(_HANGING_SERVER)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    root = str(Path(__file__).resolve().parent.parent)
    server = subprocess.Popen(
        [sys.executable, str(script), str(listener.fileno()), root],
        pass_fds=[listener.fileno()],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.err").open("wb"),
    )
    listener.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "/", 2) == 200 and _worker_pids(server.pid):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.err").read_text()
            time.sleep(0.1)
        (first,) = _worker_pids(server.pid)

        def hang() -> None:
            # The answer never comes: the worker serving it is killed.
            with contextlib.suppress(OSError, http.client.HTTPException):
                _get(port, "/hang", 30)

        threading.Thread(target=hang, daemon=True).start()
        deadline = time.monotonic() + 15
        while _worker_pids(server.pid) in ([first], []):
            assert time.monotonic() < deadline, "the stuck worker was not replaced"
            time.sleep(0.1)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                if _get(port, "/", 2) == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert first not in _worker_pids(server.pid)
    finally:
        server.terminate()
        server.wait(30)

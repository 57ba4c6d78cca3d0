"""Provider benchmarks: the real ``manifest-provider serve`` over mutual TLS 1.3 with keep-alive.

    .venv/bin/python -m benchmarks.bench_provider [--workers N] [--threads N] [--seconds S]
                                                 [--only warm,cold,latency,memory]

Prints each figure next to its target. This is a measurement, not a test: the
numbers depend on the machine (``os.cpu_count()`` is printed) and on whatever
else runs on it, and the load generator shares the CPUs with the server.
``docs/serving.md`` explains what bounds each figure.

* warm: verdicts/s for keys already in the verdict cache, batches of 100
  (target >= 20,000/s);
* cold: verdicts/s for distinct annotation-signed Deployments of about 2 KB,
  each checked once, batches of 100 (target >= 1,000/s);
* latency: p99 of single-key requests from 50 concurrent clients while warm
  (target < 20 ms);
* memory: resident set of a worker whose verdict cache holds the default
  number of entries (target < 250 MB).

Clients are persistent TLS 1.3 connections with a client certificate, as a
busy Gatekeeper with connection reuse would hold, driven by one event loop per
load-generator process: it writes pre-encoded requests and frames responses by
Content-Length, so it takes little of the CPU it shares with the server, and a
client's latency is not stretched by waiting for its own process's GIL. The
new-connection-per-call figure uses threads with ``http.client`` instead.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import selectors
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provider.certs import (  # noqa: E402
    GATEKEEPER_CLIENT_DNS_NAME,
    CertUsage,
    generate_ca,
    issue_certificate,
    write_file,
    write_keyed,
)
from provider.config import CacheSettings, ServerSettings  # noqa: E402
from provider.core.cosignkey import PrivateKey  # noqa: E402
from provider.core.limits import DEFAULT_LIMITS  # noqa: E402
from provider.core.safeyaml import load_documents  # noqa: E402
from provider.core.signing import sign_documents  # noqa: E402
from provider.wire import encode_key, encode_request  # noqa: E402

BATCH = 100
WARM_KEYS = 1_000
CONCURRENT_CLIENTS = 50
_BANNER = "manifest-provider: serving verdicts on "

# A Deployment of about 2 KB before signing, like a real application's.
_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-{i}
  namespace: shop-{ns}
  labels:
    app.kubernetes.io/name: web-{i}
    app.kubernetes.io/part-of: shop
    app.kubernetes.io/version: "1.{i}.0"
spec:
  replicas: 3
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      app.kubernetes.io/name: web-{i}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web-{i}
        app.kubernetes.io/part-of: shop
    spec:
      serviceAccountName: web
      securityContext: {{runAsNonRoot: true, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: web
          image: registry.example.com/shop/web:1.{i}.0
          args: ["--listen=:8080", "--metrics=:9090", "--log-format=json"]
          ports:
            - {{name: http, containerPort: 8080}}
            - {{name: metrics, containerPort: 9090}}
          env:
            - {{name: SHOP_DB_HOST, value: db.shop-{ns}.svc}}
            - {{name: SHOP_DB_NAME, value: shop}}
            - {{name: SHOP_CACHE_URL, value: "redis://cache.shop-{ns}.svc:6379/0"}}
            - {{name: SHOP_FEATURES, value: "checkout,wishlist,reviews,recommendations"}}
          resources:
            requests: {{cpu: 250m, memory: 256Mi}}
            limits: {{memory: 512Mi}}
          readinessProbe:
            httpGet: {{path: /readyz, port: http}}
            periodSeconds: 5
          livenessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 10
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
        - name: proxy
          image: registry.example.com/platform/proxy:2.4.{i}
          args: ["--upstream=http://127.0.0.1:8080", "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key"]
          ports:
            - {{name: https, containerPort: 8443}}
          volumeMounts:
            - {{name: tls, mountPath: /tls, readOnly: true}}
          resources:
            requests: {{cpu: 50m, memory: 64Mi}}
            limits: {{memory: 128Mi}}
      volumes:
        - name: tls
          secret: {{secretName: web-{i}-tls}}
"""


# -- material -----------------------------------------------------------------------------


def _sign_range(private_pem: bytes, start: int, stop: int) -> list[str]:
    key = PrivateKey(serialization.load_pem_private_key(private_pem, password=None))  # type: ignore[arg-type]
    keys = []
    for i in range(start, stop):
        signed = sign_documents(_DEPLOYMENT.format(i=i, ns=i % 7).encode(), key)
        keys.append(encode_key(load_documents(signed, limits=DEFAULT_LIMITS)[0]))
    return keys


def signed_keys(key: PrivateKey, count: int, *, offset: int = 0) -> list[str]:
    """``count`` distinct keys (envelopes of signed Deployments), signed on every CPU."""
    pem = key.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    procs = max(1, os.cpu_count() or 1)
    step = -(-count // procs)
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork")) as pool:
        parts = pool.map(
            _sign_range,
            [pem] * procs,
            [offset + i * step for i in range(procs)],
            [offset + min(count, (i + 1) * step) for i in range(procs)],
        )
        return [k for part in parts for k in part]


@dataclass(frozen=True, slots=True)
class Tls:
    ca: Path
    cert: Path
    key: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


# -- the server ---------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    tls: Tls
    stderr: Path

    def worker_pids(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def cpu_seconds(self) -> float:
        """User + system CPU of the workers and the master so far."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [self.process.pid, *self.worker_pids()]:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(work: Path, public_pem: bytes, *, workers: int, threads: int) -> Server:
    work.mkdir(parents=True, exist_ok=True)
    provider_ca = generate_ca("bench provider CA")
    gatekeeper_ca = generate_ca("bench gatekeeper CA")
    server = issue_certificate(provider_ca, usage=CertUsage.SERVER, ip_addresses=["127.0.0.1"])
    client = issue_certificate(gatekeeper_ca, usage=CertUsage.CLIENT, dns_names=[GATEKEEPER_CLIENT_DNS_NAME])
    write_file(work / "provider-ca.crt", provider_ca.certificate_pem(), private=False)
    write_file(work / "gatekeeper-ca.crt", gatekeeper_ca.certificate_pem(), private=False)
    write_keyed(server, work / "server.crt", work / "server.key")
    write_keyed(client, work / "client.crt", work / "client.key")
    config = {
        "keys": [{"name": "bench", "pem": public_pem.decode()}],
        "server": {
            "reloadIntervalSeconds": 0,
            "tls": {
                "certFile": "server.crt",
                "keyFile": "server.key",
                "clientCAFile": "gatekeeper-ca.crt",
                "clientDNSNames": [GATEKEEPER_CLIENT_DNS_NAME],
            },
        },
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "provider", "serve", "--config", "config.yaml", "--listen", "127.0.0.1:0"]
    args += ["--workers", str(workers), "--threads", str(threads)]
    out, err = work / "serve.out", work / "serve.err"
    with out.open("wb") as o, err.open("wb") as e:
        process = subprocess.Popen(args, cwd=work, env=env, stdout=o, stderr=e)
    deadline = time.monotonic() + 60
    url = ""
    while not url:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start: {err.read_text()[-2000:]}")
        url = next((ln[len(_BANNER) :] for ln in out.read_text().splitlines() if ln.startswith(_BANNER)), "")
        time.sleep(0.05)
    port = int(url.split(":")[2].split("/")[0])
    tls = Tls(work / "provider-ca.crt", work / "client.crt", work / "client.key")
    srv = Server(process, "127.0.0.1", port, tls, err)
    # Wait until every worker has built its app (one "provider configured" line each) and one
    # answers: a load started earlier would land on the first worker alone and leave the others cold.
    while True:
        started = err.read_text().count('"message":"provider configured"')
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start its workers: {err.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPSConnection(srv.host, srv.port, context=tls.context(), timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200 and started >= workers:
                break
        except OSError:
            pass
        time.sleep(0.1)
    return srv


# -- the load generator ---------------------------------------------------------------------


def _http_request(host: str, port: int, body: bytes) -> bytes:
    head = (
        f"POST /validate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Exchange:
    """One keep-alive connection of the event-loop client and its request in flight."""

    __slots__ = ("buffer", "next_at", "next_body", "sent_at", "sock")

    def __init__(self, sock: ssl.SSLSocket, first_body: int) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.next_at = 0.0
        self.next_body = first_body


def _response_length(buffer: bytearray) -> int:
    """Length of the whole response at the start of ``buffer``; 0 while its head is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return 0
    head = bytes(buffer[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError(f"response without Content-Length: {bytes(buffer[:200])!r}")
    value = head[at + 17 :].split(b"\r\n", 1)[0]
    return end + 4 + int(value)


def _loop_client_process(
    srv: tuple[str, int, Tls],
    bodies: Sequence[bytes],
    keys_per_body: int,
    connections: int,
    start_at: float,
    stop_at: float,
    once: Any,
    pace_seconds: float,
    out: Any,
) -> None:
    """``connections`` keep-alive TLS connections driven by one event loop (no threads, no GIL waits).

    Requests are written pre-encoded and responses framed by Content-Length, so
    the client spends a few tens of microseconds per request and the CPU goes
    to the server; latency is measured from the write to the last byte read.
    """
    host, port, tls = srv
    ctx = tls.context()
    requests = [_http_request(host, port, body) for body in bodies]
    selector = selectors.DefaultSelector()
    exchanges: list[_Exchange] = []
    for index in range(connections):
        raw = socket.create_connection((host, port), timeout=60)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = ctx.wrap_socket(raw, server_hostname=host)
        exchange = _Exchange(sock, index)
        exchanges.append(exchange)
    latencies: list[float] = []
    errors: list[str] = []
    verdicts = 0
    while time.time() < start_at:
        time.sleep(0.001)
    begin = time.perf_counter()
    deadline = begin + (stop_at - start_at)
    waiting: list[_Exchange] = []

    def send(exchange: _Exchange) -> bool:
        if once is not None:
            # A shared counter hands out the next body to whichever connection is free, so
            # a connection on a less busy worker takes more: every worker stays busy.
            with once.get_lock():
                j = once.value
                once.value += 1
            if j >= len(requests):
                return False
        else:
            j = exchange.next_body % len(requests)
            exchange.next_body += 7
        exchange.sock.setblocking(True)
        exchange.sent_at = time.perf_counter()
        exchange.sock.sendall(requests[j])
        exchange.sock.setblocking(False)
        return True

    for index, exchange in enumerate(exchanges):
        exchange.sock.setblocking(False)
        selector.register(exchange.sock, selectors.EVENT_READ, exchange)
        if pace_seconds:
            # Paced clients start spread over one interval, like independent callers.
            exchange.next_at = begin + pace_seconds * index / connections
            waiting.append(exchange)
        elif not send(exchange):
            selector.unregister(exchange.sock)
    active = len(selector.get_map())
    while active:
        now = time.perf_counter()
        if waiting:
            waiting.sort(key=lambda e: e.next_at)
            while waiting and waiting[0].next_at <= now:
                send(waiting.pop(0))
        timeout = max(0.0, waiting[0].next_at - time.perf_counter()) if waiting else 1.0
        for key, _ in selector.select(timeout):
            exchange = key.data
            try:
                while True:
                    data = exchange.sock.recv(256 * 1024)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    exchange.buffer += data
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
            except OSError as exc:
                errors.append(repr(exc))
                selector.unregister(exchange.sock)
                active -= 1
                continue
            size = _response_length(exchange.buffer)
            if not size or len(exchange.buffer) < size:
                continue
            done = time.perf_counter()
            response = bytes(exchange.buffer[:size])
            del exchange.buffer[:size]
            latencies.append(done - exchange.sent_at)
            if not response.startswith(b"HTTP/1.1 200") or b'"systemError":""' not in response[-200:]:
                errors.append(response[-200:].decode(errors="replace"))
            else:
                verdicts += keys_per_body
            if once is None and done >= deadline:
                selector.unregister(exchange.sock)
                active -= 1
            elif pace_seconds:
                exchange.next_at += pace_seconds
                waiting.append(exchange)
            elif not send(exchange):
                selector.unregister(exchange.sock)
                active -= 1
    for exchange in exchanges:
        exchange.sock.close()
    cpu = os.times()
    out.put((verdicts, latencies, errors[:3], cpu.user + cpu.system))


def _reconnecting_client_process(
    srv: tuple[str, int, Tls],
    bodies: Sequence[bytes],
    keys_per_body: int,
    threads: int,
    start_at: float,
    stop_at: float,
    pace_seconds: float,
    out: Any,
) -> None:
    """Gatekeeper's way: threads that open a new TLS connection (full handshake) for every call."""
    host, port, tls = srv
    ctx = tls.context()
    latencies: list[float] = []
    verdicts = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        local: list[float] = []
        n = 0
        i = index
        while time.time() < start_at:
            time.sleep(0.001)
        next_at = time.perf_counter() + pace_seconds * (index / threads)
        while time.time() < stop_at:
            body = bodies[i % len(bodies)]
            i += 7
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_at += pace_seconds
            t0 = time.perf_counter()
            conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=60)
            conn.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            conn.close()
            local.append(time.perf_counter() - t0)
            if response.status != 200 or b'"systemError":""' not in data[-200:]:
                with lock:
                    errors.append(data[-200:].decode(errors="replace"))
            else:
                n += keys_per_body
        with lock:
            latencies.extend(local)
            verdicts[0] += n

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cpu = os.times()
    out.put((verdicts[0], latencies, errors[:3], cpu.user + cpu.system))


@dataclass(frozen=True, slots=True)
class Load:
    verdicts: int
    seconds: float
    latencies: list[float]
    errors: list[str]
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.verdicts / self.seconds if self.seconds else 0.0

    @property
    def server_capacity(self) -> float:
        """Verdicts per second of server CPU: what one core could do with the load generator elsewhere."""
        return self.verdicts / self.server_cpu if self.server_cpu else 0.0

    def cpu_note(self) -> str:
        return (
            f"server CPU {self.server_cpu:.1f} s ({self.server_capacity:,.0f} verdicts per CPU-second), "
            f"load generator CPU {self.client_cpu:.1f} s"
        )

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def generate_load(
    srv: Server,
    bodies: Sequence[bytes],
    *,
    keys_per_body: int,
    processes: int,
    threads: int,
    seconds: float,
    once: bool = False,
    pace_seconds: float = 0.0,
    reconnect: bool = False,
) -> Load:
    """Send ``bodies`` from ``processes`` x ``threads`` clients.

    Each client is a persistent connection of an event-loop process, or with
    ``reconnect`` a thread that opens a new connection for every call.
    ``once``: every body is sent exactly once (handed to whichever connection is free);
    otherwise the clients cycle through them for ``seconds``.
    """
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 1.0
    stop_at = start_at + seconds
    cpu_before = srv.cpu_seconds()
    counter = ctx.Value("l", 0) if once else None
    where = (srv.host, srv.port, srv.tls)
    procs = []
    for _ in range(processes):
        if reconnect:
            target: Any = _reconnecting_client_process
            args: tuple[Any, ...] = (
                where,
                bodies,
                keys_per_body,
                threads,
                start_at,
                stop_at,
                pace_seconds,
                queue,
            )
        else:
            target = _loop_client_process
            args = (where, bodies, keys_per_body, threads, start_at, stop_at, counter, pace_seconds, queue)
        proc = ctx.Process(target=target, args=args)
        proc.start()
        procs.append(proc)
    results = [queue.get() for _ in procs]
    elapsed = max(time.time() - start_at, 1e-9)
    server_cpu = srv.cpu_seconds() - cpu_before
    for proc in procs:
        proc.join()
    verdicts = sum(r[0] for r in results)
    latencies = [x for r in results for x in r[1]]
    errors = [e for r in results for e in r[2]]
    client_cpu = sum(r[3] for r in results)
    return Load(verdicts, elapsed if once else seconds, latencies, errors, server_cpu, client_cpu)


def warm_up(srv: Server, keys: Sequence[str], *, processes: int) -> None:
    """Fill every worker's verdict cache with ``keys``.

    Connections land on workers at random, so small batches go out on many
    connections until a round costs the server little CPU per verdict (all hits).
    """
    bodies = batches(keys, 10)
    for _ in range(20):
        load = generate_load(srv, bodies, keys_per_body=10, processes=processes, threads=4, seconds=2)
        if load.server_capacity > 5_000 and not load.errors:
            return
    print("  warning: the verdict caches may not be warm", flush=True)


def batches(keys: Sequence[str], size: int) -> list[bytes]:
    return [encode_request(keys[i : i + size]) for i in range(0, len(keys), size)]


# -- the figures -----------------------------------------------------------------------------


def report(name: str, value: str, target: str, ok: bool | None, *notes: str) -> None:
    """One figure; ``ok`` is None for figures that have no target (information only)."""
    mark = "info" if ok is None else "ok  " if ok else "MISS"
    label = "no target:" if ok is None else "target"
    print(f"  [{mark}] {name:<46} {value:>12}   {label} {target}", flush=True)
    for note in notes:
        if note:
            print(f"{'':<10}{note}", flush=True)


def _errors(load: Load) -> str:
    return f"ERRORS: {len(load.errors)}, first: {load.errors[0]}" if load.errors else ""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(prog="bench_provider", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=cpus, help="gunicorn workers (default: CPUs)")
    parser.add_argument(
        "--threads",
        type=int,
        default=ServerSettings().threads,
        help="event loops per worker (default: the configuration's)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each timed phase")
    parser.add_argument("--cold-keys", type=int, default=6_000, help="distinct signed Deployments for 'cold'")
    parser.add_argument("--only", default="warm,cold,latency,memory")
    parser.add_argument(
        "--paced-rate", type=float, default=10.0, help="requests/s per client in the paced latency run"
    )
    args = parser.parse_args(argv)
    phases = set(args.only.split(","))
    print(
        f"manifest-provider benchmarks: os.cpu_count()={cpus}, workers={args.workers}, threads={args.threads}"
    )

    key = PrivateKey.generate()
    t0 = time.perf_counter()
    cache_entries = CacheSettings().entries
    need = max(WARM_KEYS, args.cold_keys if "cold" in phases else 0)
    if "memory" in phases:
        need = max(need, cache_entries)
    keys = signed_keys(key, need)
    size = statistics.mean(len(k) for k in keys[:200])
    print(
        f"  signed {len(keys)} Deployments in {time.perf_counter() - t0:.1f} s (keys of {size / 1024:.1f} KiB)"
    )

    with tempfile.TemporaryDirectory(prefix="bench-provider-") as tmp:
        srv = start_server(Path(tmp) / "main", key.public_pem(), workers=args.workers, threads=args.threads)
        try:
            clients = max(2, cpus)
            if "cold" in phases:
                load = generate_load(
                    srv,
                    batches(keys[: args.cold_keys], BATCH),
                    keys_per_body=BATCH,
                    processes=clients,
                    threads=4,
                    seconds=0,
                    once=True,
                )
                report(
                    f"cold verdicts/s (batches of {BATCH}, keys {size / 1024:.1f} KiB)",
                    f"{load.rate:,.0f}/s",
                    ">= 1,000/s",
                    load.rate >= 1_000 and not load.errors,
                    f"{load.verdicts} distinct keys in {load.seconds:.2f} s; {load.cpu_note()}",
                    _errors(load),
                )
            warm = keys[-WARM_KEYS:]
            warm_bodies = batches(warm, BATCH)
            warm_up(srv, warm, processes=clients)
            if "warm" in phases:
                load = generate_load(
                    srv, warm_bodies, keys_per_body=BATCH, processes=clients, threads=4, seconds=args.seconds
                )
                report(
                    f"warm verdicts/s (batches of {BATCH})",
                    f"{load.rate:,.0f}/s",
                    ">= 20,000/s",
                    load.rate >= 20_000 and not load.errors,
                    f"p50 {load.percentile(0.5) * 1000:.1f} ms per batch; {load.cpu_note()}",
                    _errors(load),
                )
            if "latency" in phases:
                singles = [encode_request([k]) for k in warm]

                def single_keys(pace_seconds: float) -> Load:
                    # One event loop drives all 50 connections of the keep-alive runs: at a few
                    # tens of microseconds per request it needs a fraction of one CPU, and every
                    # further process would only compete with the server for the same two.
                    return generate_load(
                        srv,
                        singles,
                        keys_per_body=1,
                        processes=1,
                        threads=CONCURRENT_CLIENTS,
                        seconds=args.seconds,
                        pace_seconds=pace_seconds,
                    )

                load = single_keys(0.0)
                p99 = load.percentile(0.99) * 1000
                report(
                    f"p99 latency, {CONCURRENT_CLIENTS} clients back to back, 1 key",
                    f"{p99:.1f} ms",
                    "< 20 ms",
                    p99 < 20 and not load.errors,
                    f"p50 {load.percentile(0.5) * 1000:.1f} ms at {load.rate:,.0f} req/s (saturated: "
                    f"latency = clients / throughput); {load.cpu_note()}",
                    _errors(load),
                )
                paced = single_keys(1 / args.paced_rate)
                p99 = paced.percentile(0.99) * 1000
                report(
                    f"p99 latency, {CONCURRENT_CLIENTS} clients x {args.paced_rate:g} req/s, 1 key",
                    f"{p99:.1f} ms",
                    "< 20 ms",
                    p99 < 20 and not paced.errors,
                    f"p50 {paced.percentile(0.5) * 1000:.1f} ms at {paced.rate:,.0f} req/s; {paced.cpu_note()}",
                    _errors(paced),
                )
                fresh = generate_load(
                    srv,
                    singles,
                    keys_per_body=1,
                    processes=clients,
                    threads=CONCURRENT_CLIENTS // clients,
                    seconds=args.seconds,
                    pace_seconds=1 / args.paced_rate,
                    reconnect=True,
                )
                p99 = fresh.percentile(0.99) * 1000
                report(
                    "p99 latency, as above, new TLS connection each",
                    f"{p99:.1f} ms",
                    "Gatekeeper's own pattern (a TLS handshake per call)",
                    None if not fresh.errors else False,
                    f"p50 {fresh.percentile(0.5) * 1000:.1f} ms at {fresh.rate:,.0f} req/s; {fresh.cpu_note()}",
                    _errors(fresh),
                )
        finally:
            srv.stop()

        if "memory" in phases:
            one = start_server(Path(tmp) / "memory", key.public_pem(), workers=1, threads=args.threads)
            try:
                (pid,) = one.worker_pids()
                before = rss_mb(pid)
                fill = keys[:cache_entries]
                generate_load(
                    one,
                    batches(fill, BATCH),
                    keys_per_body=BATCH,
                    processes=clients,
                    threads=4,
                    seconds=0,
                    once=True,
                )
                after = rss_mb(pid)
                report(
                    f"worker RSS, cache full ({cache_entries:,} verdicts)",
                    f"{after:.0f} MB",
                    "< 250 MB",
                    after < 250,
                    f"{before:.0f} MB before filling",
                )
            finally:
                one.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

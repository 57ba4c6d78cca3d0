"""The provider service: a ProviderRequest body in, a ProviderResponse body out.

No web framework here; :mod:`provider.web` is a thin adapter over
:meth:`ProviderService.handle`. The rules that keep Gatekeeper's own cache
honest:

* one item per distinct key; a key that cannot be a request at all (not JSON,
  wrong types, oversized) gets an item ``error``: that is deterministic;
* a check that could not complete (a registry down, the deadline passed) makes
  the whole answer a ``systemError`` with no items, because Gatekeeper caches
  every item it receives and a transient failure must never be cached;
* only verdicts are cached here, keyed by the key's SHA-256 and the
  configuration generation, as the serialized bytes that go on the wire.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import orjson
from cachetools import TTLCache

from provider import wire
from provider.config import Settings
from provider.core.ignore import IgnoreRule
from provider.core.verdict import Verdict
from provider.errors import DeadlineExceededError, FormatError, InputError, SourceError
from provider.logs import FIELDS, info_line
from provider.metrics import Metrics

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class VerdictSource(Protocol):
    """What the service needs from the core verifier."""

    def verify(
        self,
        obj: Mapping[str, Any],
        *,
        extra_rules: Sequence[IgnoreRule] = (),
        namespace: str | None = None,
    ) -> Verdict: ...


@dataclass(frozen=True, slots=True)
class CachedVerdict:
    """A verdict as it goes on the wire, plus what logs and metrics need."""

    body: bytes
    reason: str
    verified: bool


class VerdictCache:
    """A thread-safe TTL cache of serialized verdicts; ``entries=0`` disables it."""

    def __init__(self, entries: int, ttl_seconds: float, *, timer: Clock = time.monotonic) -> None:
        self.enabled = entries > 0
        self._cache: TTLCache[tuple[str, bytes], CachedVerdict] = TTLCache(
            maxsize=max(entries, 1), ttl=ttl_seconds, timer=timer
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> CachedVerdict | None:
        if not self.enabled:
            return None
        with self._lock:
            return self._cache.get(key)

    def put(self, key: tuple[str, bytes], value: CachedVerdict) -> None:
        if self.enabled:
            with self._lock:
                self._cache[key] = value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A cache miss that decoded into a verification request."""

    index: int
    digest: bytes
    request: wire.KeyRequest


@dataclass(frozen=True, slots=True)
class _Checked:
    verdict: CachedVerdict
    seconds: float


class _RequestFailed(Exception):
    """Internal: the answer becomes a systemError of ``kind``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ProviderService:
    """Answers ProviderRequests for one configuration generation."""

    def __init__(
        self,
        settings: Settings,
        verifier: VerdictSource,
        *,
        metrics: Metrics | None = None,
        executor: ThreadPoolExecutor | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.metrics = metrics if metrics is not None else Metrics()
        self.generation = settings.generation
        self.cache = VerdictCache(settings.cache.entries, settings.cache.ttl_seconds, timer=clock)
        self._own_executor = executor is None
        # Threads overlap network waits of referenced bundles; checks of
        # embedded signatures are CPU-bound and run on the request thread.
        self._executor = executor or ThreadPoolExecutor(max_workers=16, thread_name_prefix="verify")
        self._clock = clock
        self._deadline_seconds = settings.server.deadline_milliseconds / 1000.0
        self._bundle_ref = f"{settings.annotation_domain}/resourceBundleRef"

    def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- entry points -----------------------------------------------------------

    def now(self) -> float:
        """The service's clock, to start a request's deadline when it arrives."""
        return self._clock()

    def handle(self, body: bytes, *, started: float | None = None) -> bytes:
        """A ProviderRequest body -> a ProviderResponse body; never raises.

        ``started`` (from :meth:`now`) is when the request arrived; the
        deadline counts from there, body transfer included.
        """
        started = self._clock() if started is None else started
        try:
            keys = wire.parse_request(body, max_keys=self.settings.server.max_keys_per_request)
        except InputError as exc:
            self.metrics.system_error_by_kind["request"].inc()
            logger.warning(
                "request rejected", extra={FIELDS: {"event": "request", "error": exc.diagnostics()}}
            )
            return wire.system_error(exc.diagnostics())
        return self.answer(keys, started=started).to_bytes()

    def answer(self, keys: Sequence[str], *, started: float | None = None) -> wire.Answer:
        """Answer ``keys`` (strings already); a systemError answer carries no items."""
        started = self._clock() if started is None else started
        deadline = started + self._deadline_seconds
        self.metrics.keys_per_request.observe(len(keys))
        try:
            return self._answer(list(dict.fromkeys(keys)), deadline)
        except _RequestFailed as exc:
            self.metrics.system_error_by_kind[exc.kind].inc()
            logger.warning(
                "request failed",
                extra={
                    FIELDS: {
                        "event": "request",
                        "error": exc.message,
                        "kind": exc.kind,
                        "keys": len(keys),
                        "duration_ms": round((self._clock() - started) * 1000, 3),
                    }
                },
            )
            return wire.Answer.failure(exc.message)

    # -- the work ---------------------------------------------------------------

    def _answer(self, keys: list[str], deadline: float) -> wire.Answer:
        m = self.metrics
        log = logger.isEnabledFor(logging.INFO)
        generation = self.generation
        max_key_bytes = self.settings.server.max_key_bytes
        limits = self.settings.limits
        items: list[wire.Item | None] = [None] * len(keys)
        reasons: Tally[str] = Tally()
        hits = 0
        remote: list[_Pending] = []
        local: list[_Pending] = []

        # (1) Cached verdicts and keys that cannot be requests, without parsing
        #     anything that the cache already answers.
        for index, key in enumerate(keys):
            try:
                data = key.encode("utf-8")
            except UnicodeEncodeError:
                items[index] = self._key_error(key, None, "key is not valid UTF-8 text", log)
                continue
            if len(data) > max_key_bytes:
                message = (
                    f"key is {len(data)} bytes, more than the {max_key_bytes} allowed (server.maxKeyBytes)"
                )
                items[index] = self._key_error(key, data, message, log)
                continue
            digest = hashlib.sha256(data).digest()
            hit = self.cache.get((generation, digest))
            if hit is not None:
                hits += 1
                reasons[hit.reason] += 1
                items[index] = wire.Item(key, hit.body)
                if log:
                    _log_key(digest, hit, 0.0, cached=True)
                continue
            try:
                request = wire.parse_key(data, limits=limits)
            except InputError as exc:
                items[index] = self._key_error(key, data, exc.diagnostics(), log)
                continue
            pending = _Pending(index, digest, request)
            (remote if self._needs_network(request.object) else local).append(pending)
        if hits:
            m.cache_hits.inc(hits)
        misses = len(remote) + len(local)
        if misses:
            m.cache_misses.inc(misses)

        # (2) Keys whose bundle lives elsewhere start first, on the pool, so
        #     their network waits overlap each other and the local checks.
        futures: dict[Future[_Checked], _Pending] = {self._executor.submit(self._check, p): p for p in remote}
        try:
            for p in local:
                if self._clock() > deadline:
                    raise _deadline(self._deadline_seconds)
                outcome = _outcome(partial(self._check, p))
                items[p.index] = self._settle(keys[p.index], p, outcome, reasons, log)
            waiting = set(futures)
            while waiting:
                # wait() sleeps on real time; the deadline is measured on the clock.
                left = deadline - self._clock()
                if left <= 0:
                    raise _deadline(self._deadline_seconds)
                done, waiting = wait(waiting, timeout=left, return_when=FIRST_EXCEPTION)
                for future in done:
                    p = futures[future]
                    items[p.index] = self._settle(keys[p.index], p, _outcome(future.result), reasons, log)
        except _RequestFailed:
            for future in futures:
                # Started checks finish in the background and still fill the
                # cache, so Gatekeeper's retry is answered quickly.
                future.cancel()
            raise
        for reason, count in reasons.items():
            m.verdict_by_reason[reason].inc(count)
        return wire.Answer(items=tuple(item for item in items if item is not None))

    def _needs_network(self, obj: Mapping[str, Any]) -> bool:
        metadata = obj.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        return isinstance(annotations, dict) and self._bundle_ref in annotations

    def _check(self, p: _Pending) -> _Checked:
        """Verify one key and cache the verdict; runs on any thread."""
        started = self._clock()
        try:
            verdict = self.verifier.verify(
                p.request.object, extra_rules=p.request.extra_rules, namespace=p.request.namespace
            )
        except (SourceError, InputError):
            raise
        except FormatError as exc:
            # Content of the object itself that the verifier could not take:
            # deterministic, so an item error rather than a systemError.
            raise InputError(f"object cannot be checked: {exc.diagnostics()}") from exc
        except Exception as exc:
            logger.exception(
                "verification failed unexpectedly", extra={FIELDS: {"key_sha256": p.digest.hex()}}
            )
            raise _RequestFailed("internal", "internal error while checking a key") from exc
        cached = CachedVerdict(orjson.dumps(verdict.to_json()), verdict.reason.value, verdict.verified)
        self.cache.put((self.generation, p.digest), cached)
        seconds = self._clock() - started
        self.metrics.check_seconds.observe(seconds)
        return _Checked(cached, seconds)

    def _settle(
        self, key: str, p: _Pending, outcome: _Checked | InputError, reasons: Tally[str], log: bool
    ) -> wire.Item:
        if isinstance(outcome, InputError):
            return self._key_error(key, None, outcome.diagnostics(), log, digest=p.digest)
        reasons[outcome.verdict.reason] += 1
        if log:
            _log_key(p.digest, outcome.verdict, outcome.seconds, cached=False)
        return wire.Item(key, outcome.verdict.body)

    def _key_error(
        self, key: str, data: bytes | None, message: str, log: bool, *, digest: bytes | None = None
    ) -> wire.Item:
        self.metrics.key_errors.inc()
        if log:
            if digest is None and data is not None:
                digest = hashlib.sha256(data).digest()
            logger.info(
                "key rejected",
                extra={
                    FIELDS: {
                        "event": "key",
                        "decision": "error",
                        "reason": "INVALID_KEY",
                        "error": message,
                        "key_sha256": digest.hex() if digest else None,
                        "cache": "none",
                    }
                },
            )
        return wire.Item(key, None, message)


def _outcome(check: Callable[[], _Checked]) -> _Checked | InputError:
    """A finished check, its deterministic input error, or the failure of the request."""
    try:
        return check()
    except InputError as exc:
        return exc
    except DeadlineExceededError as exc:
        raise _RequestFailed("deadline", exc.diagnostics()) from exc
    except SourceError as exc:
        raise _RequestFailed("source", f"could not check a key: {exc.diagnostics()}") from exc


def _deadline(seconds: float) -> _RequestFailed:
    return _RequestFailed(
        "deadline",
        f"could not check every key within the {seconds * 1000:.0f} ms deadline "
        "(server.deadlineMilliseconds); retry",
    )


def _log_key(digest: bytes, verdict: CachedVerdict, seconds: float, *, cached: bool) -> None:
    fields = {
        "event": "key",
        "decision": "allow" if verdict.verified else "deny",
        "reason": verdict.reason,
        "duration_ms": round(seconds * 1000, 3),
        "cache": "hit" if cached else "miss",
        "key_sha256": digest.hex(),
    }
    # One line per answered key is the hot path: written without a LogRecord when possible.
    info_line(logger, "key answered", fields)


# -- the running state ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """The outcome of the last configuration (re)load."""

    ok: bool
    at: float  # wall-clock seconds since the epoch
    generation: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "generation": self.generation,
            "error": self.error,
        }


class ProviderRuntime:
    """What a running provider holds: the current service, readiness, reload status.

    The current :class:`ProviderService` is replaced as a whole on reload; a
    request keeps the service it started with, so it sees one configuration.
    """

    def __init__(self, service: ProviderService, *, metrics: Metrics) -> None:
        self.metrics = metrics
        self._service = service
        self._lock = threading.Lock()
        self._tls_ready = False
        self._tls_detail: str | None = "serving material not confirmed yet"
        self.reload_status = ReloadStatus(ok=True, at=time.time(), generation=service.generation)
        metrics.set_generation(service.generation)
        metrics.config_last_reload_ok.set(1)

    @property
    def service(self) -> ProviderService:
        # A plain attribute read is atomic; the lock only orders writers.
        return self._service

    @property
    def settings(self) -> Settings:
        return self._service.settings

    def swap(self, service: ProviderService) -> ProviderService:
        """Put ``service`` in effect; returns the one it replaced."""
        with self._lock:
            old, self._service = self._service, service
            self.reload_status = ReloadStatus(ok=True, at=time.time(), generation=service.generation)
            self.metrics.set_generation(service.generation)
            self.metrics.config_last_reload_ok.set(1)
            self.metrics.reload_success.inc()
        old.close()
        return old

    def reload_unchanged(self) -> None:
        """A reload produced the configuration already running."""
        with self._lock:
            self.reload_status = ReloadStatus(ok=True, at=time.time(), generation=self._service.generation)
            self.metrics.config_last_reload_ok.set(1)

    def reload_failed(self, error: str) -> None:
        """A new configuration was rejected; the running one stays in effect."""
        with self._lock:
            self.reload_status = ReloadStatus(
                ok=False, at=time.time(), generation=self._service.generation, error=error
            )
            self.metrics.config_last_reload_ok.set(0)
            self.metrics.reload_failure.inc()

    def mark_tls_ready(self) -> None:
        """The server confirms its TLS material is loaded (or plain HTTP was chosen)."""
        with self._lock:
            self._tls_ready = True
            self._tls_detail = None

    def mark_tls_unready(self, detail: str) -> None:
        """The server lost its serving material (e.g. a rotated certificate is unreadable)."""
        with self._lock:
            self._tls_ready = False
            self._tls_detail = detail

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether to receive traffic, and why; the body of ``GET /readyz``."""
        with self._lock:
            service = self._service
            ready = self._tls_ready
            detail = {
                "ready": ready,
                "generation": service.generation,
                "checks": {
                    "config": {"ok": True, "path": service.settings.source_path},
                    "keys": {"ok": True, "count": len(service.settings.keys)},
                    "tls": {"ok": self._tls_ready, "detail": self._tls_detail},
                },
                "lastReload": self.reload_status.to_json(),
            }
        return ready, detail

"""Prometheus metrics of the provider.

Each app owns its own :class:`CollectorRegistry`, so several apps in one
process (tests) never collide. Under a multi-process server the
``PROMETHEUS_MULTIPROC_DIR`` convention of prometheus-client is honoured by
:meth:`Metrics.exposition`.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

from provider.core.verdict import Reason

_PREFIX = "manifest_provider"
# Seconds: the hot path answers from cache in microseconds; a cold key with a
# registry round trip takes tens to hundreds of milliseconds.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_KEY_COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)

SYSTEM_ERROR_KINDS = ("request", "source", "deadline", "internal")


class Metrics:
    """The provider's metrics; label children are resolved once for the hot path."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.verdicts = Counter(
            f"{_PREFIX}_verdicts",
            "Verdicts answered, by reason (cached ones included)",
            ["reason"],
            registry=r,
        )
        self.key_errors = Counter(
            f"{_PREFIX}_key_errors",
            "Keys answered with an item error (not a verification request)",
            registry=r,
        )
        self.system_errors = Counter(
            f"{_PREFIX}_system_errors", "Requests answered with a systemError, by kind", ["kind"], registry=r
        )
        self.requests = Counter(f"{_PREFIX}_requests", "Validation requests received", registry=r)
        self.request_seconds = Histogram(
            f"{_PREFIX}_request_seconds",
            "Time to answer one validation request",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.check_seconds = Histogram(
            f"{_PREFIX}_key_check_seconds",
            "Time to check one key that was not cached",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.keys_per_request = Histogram(
            f"{_PREFIX}_keys_per_request",
            "Keys per validation request (before removing duplicates)",
            buckets=_KEY_COUNT_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(f"{_PREFIX}_cache_hits", "Keys answered from the verdict cache", registry=r)
        self.cache_misses = Counter(
            f"{_PREFIX}_cache_misses", "Keys not found in the verdict cache", registry=r
        )
        self.in_flight = Gauge(
            f"{_PREFIX}_in_flight_requests",
            "Validation requests being answered",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.reloads = Counter(
            f"{_PREFIX}_config_reloads", "Configuration reloads, by result", ["result"], registry=r
        )
        self.config_generation = Gauge(
            f"{_PREFIX}_config_generation_info",
            "The configuration generation in effect (value 1)",
            ["generation"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.config_last_reload_ok = Gauge(
            f"{_PREFIX}_config_last_reload_success",
            "1 when the last configuration (re)load succeeded, 0 when the running one is older",
            registry=r,
            multiprocess_mode="liveall",
        )
        # Resolve label children once; labels() takes a lock and a dict lookup.
        self.verdict_by_reason = {reason.value: self.verdicts.labels(reason.value) for reason in Reason}
        self.system_error_by_kind = {kind: self.system_errors.labels(kind) for kind in SYSTEM_ERROR_KINDS}
        self.reload_success = self.reloads.labels("success")
        self.reload_failure = self.reloads.labels("failure")
        self._generation: str | None = None

    def set_generation(self, generation: str) -> None:
        if self._generation is not None and self._generation != generation:
            # Zero first: in multi-process mode a removed child's last value stays on disk.
            self.config_generation.labels(self._generation).set(0)
            self.config_generation.remove(self._generation)
        self._generation = generation
        self.config_generation.labels(generation).set(1)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

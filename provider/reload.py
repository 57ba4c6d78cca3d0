"""Live configuration reload.

A ConfigMap mounted as a volume changes by an atomic symlink swap (the
``..data`` link points at a new timestamped directory), so neither the path
nor necessarily the mtime of the file seen through the link says much. The
watcher therefore fingerprints the *content* of the configuration file and of
every file it names (keys, trusted root, TLS material) on an interval.

On a change the new settings and verifier are built and validated completely
before anything is swapped. A bad new configuration leaves the running one in
effect and is reported (log line, ``manifest_provider_config_reloads_total
{result="failure"}``, ``lastReload`` in ``/readyz``). Because the verdict
cache is keyed by the configuration generation, no verdict of the old
configuration is served after a swap.

Every ``resync_seconds`` the configuration is rebuilt even without a file
change, so material fetched from elsewhere (Secret-held keys) is picked up;
when that produces the same generation nothing is swapped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence

from provider.errors import ManifestProviderError
from provider.logs import FIELDS
from provider.service import ProviderRuntime, ProviderService

logger = logging.getLogger(__name__)

# Larger files are not configuration; their size change is still noticed.
_MAX_FINGERPRINT_BYTES = 16 * 1024 * 1024

Fingerprint = tuple[tuple[str, str], ...]


def fingerprint(paths: Sequence[str]) -> Fingerprint:
    """Content digests of ``paths`` (a missing or unreadable file has a marker instead)."""
    out: list[tuple[str, str]] = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                data = fh.read(_MAX_FINGERPRINT_BYTES + 1)
        except OSError as exc:
            out.append((path, f"unreadable:{exc.errno}"))
            continue
        out.append((path, hashlib.sha256(data).hexdigest()))
    return tuple(out)


class ConfigWatcher:
    """Polls the configuration files and swaps in a rebuilt service when they change.

    ``build`` reads the configuration from scratch and returns a ready
    service (raising on any problem); it runs on the watcher thread, never
    on a request thread.
    """

    def __init__(
        self,
        runtime: ProviderRuntime,
        build: Callable[[], ProviderService],
        *,
        interval_seconds: float,
        resync_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self._build = build
        self.interval_seconds = interval_seconds
        self.resync_seconds = resync_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._files = self._watched()
        self._seen = fingerprint(self._files)
        self._last_build = clock()

    def _watched(self) -> tuple[str, ...]:
        settings = self.runtime.settings
        files = settings.watched_files or ((settings.source_path,) if settings.source_path else ())
        return tuple(files)

    def poll(self) -> bool | None:
        """Check once. None: nothing changed; True: a new configuration is in effect
        (or an identical one was confirmed); False: the new configuration was rejected.
        """
        with self._lock:
            now = self._clock()
            current = fingerprint(self._files)
            changed = current != self._seen
            if not changed and now - self._last_build < self.resync_seconds:
                return None
            # Remember what was seen before building, so a file that changes
            # again while the build runs is noticed on the next poll.
            self._seen = current
            self._last_build = now
            return self._reload(changed=changed)

    def _reload(self, *, changed: bool) -> bool:
        old = self.runtime.service
        try:
            service = self._build()
        except Exception as exc:
            error = exc.diagnostics() if isinstance(exc, ManifestProviderError) else "unexpected error"
            if not isinstance(exc, ManifestProviderError):
                logger.exception("configuration reload failed unexpectedly")
            self.runtime.reload_failed(error)
            logger.error(
                "new configuration rejected; the running configuration stays in effect",
                extra={
                    FIELDS: {
                        "event": "reload",
                        "result": "failure",
                        "error": error,
                        "generation": old.generation,
                    }
                },
            )
            return False
        if (
            service.generation == old.generation
            and service.settings.server == old.settings.server
            and service.settings.cache == old.settings.cache
        ):
            # Same verdict inputs: keep the warm cache.
            service.close()
            self.runtime.reload_unchanged()
            if changed:
                logger.info(
                    "configuration files changed, effective configuration unchanged",
                    extra={FIELDS: {"event": "reload", "result": "unchanged", "generation": old.generation}},
                )
            return True
        self._note_restart_only(old, service)
        if service.generation == old.generation and service.settings.cache == old.settings.cache:
            # Only server settings changed: the cached verdicts are still right.
            service.cache = old.cache
        self.runtime.swap(service)
        if service.settings.server.reload_interval_seconds > 0:
            self.interval_seconds = service.settings.server.reload_interval_seconds
        new_files = self._watched()
        if new_files != self._files:
            self._files = new_files
            self._seen = fingerprint(new_files)
        logger.info(
            "configuration reloaded",
            extra={
                FIELDS: {
                    "event": "reload",
                    "result": "success",
                    "generation": service.generation,
                    "previous_generation": old.generation,
                }
            },
        )
        return True

    @staticmethod
    def _note_restart_only(old: ProviderService, new: ProviderService) -> None:
        a, b = old.settings.server, new.settings.server
        pending = [
            name
            for name, before, after in (
                ("listen", a.listen, b.listen),
                ("workers", a.workers, b.workers),
                ("threads", a.threads, b.threads),
                ("keepAliveSeconds", a.keep_alive_seconds, b.keep_alive_seconds),
                ("tls", a.tls, b.tls),
            )
            if before != after
        ]
        if pending:
            logger.warning(
                "some server settings change only on restart",
                extra={FIELDS: {"event": "reload", "restart_required": [f"server.{n}" for n in pending]}},
            )

    # -- the polling thread ---------------------------------------------------------

    def start(self) -> None:
        """Poll on a daemon thread every ``interval_seconds`` (no-op if running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                self.poll()
            except Exception:  # keep watching whatever happened to one poll
                logger.exception("configuration watcher poll failed")

"""The app factory: configuration -> verifier -> service -> Flask app.

``create_app`` is what the server (gunicorn) points at. The long-lived state
is a :class:`provider.service.ProviderRuntime` in
``app.extensions["manifest_provider"]``; the server calls its
``mark_tls_ready()`` once its TLS material is loaded (or plain HTTP was
explicitly chosen), and only then does ``GET /readyz`` answer 200.

When the app was built from a configuration file, a watcher thread reloads
it on change (``server.reloadIntervalSeconds``; 0 disables). The watcher is
``app.extensions["manifest_provider.watcher"]``; a pre-forking server that
builds the app before forking must call its ``start()`` in each worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from flask import Flask

from provider.config import SecretLoader, Settings, build_verifier, load_settings
from provider.core.bundle import BundleResolver
from provider.logs import FIELDS
from provider.metrics import Metrics
from provider.reload import ConfigWatcher
from provider.service import ProviderRuntime, ProviderService
from provider.sources.cluster import load_pull_secret_ref, load_secret_key
from provider.sources.resolver import resolver_from_settings
from provider.web import EXTENSION, ValidateEndpoint, blueprint, register_error_handlers

logger = logging.getLogger(__name__)

WATCHER_EXTENSION = f"{EXTENSION}.watcher"

ResolverFactory = Callable[[Settings], BundleResolver | None]
# Adjusts every loaded configuration (e.g. command-line overrides); may raise ConfigError.
SettingsTransform = Callable[[Settings], Settings]


def default_resolver(settings: Settings) -> BundleResolver:
    """Referenced bundles from the allowed registries and ConfigMap namespaces.

    A kind of reference whose section is absent is refused as a verdict
    (``REFERENCE_NOT_ALLOWED``) by the dispatcher.
    """
    return resolver_from_settings(settings)


def _cluster_secret(reference: str) -> bytes:
    return load_secret_key(reference)


def _unchanged(settings: Settings) -> Settings:
    return settings


def create_app(
    settings: Settings | None = None,
    *,
    config_path: str | None = None,
    secret_loader: SecretLoader | None = None,
    pull_secret_loader: SecretLoader | None = None,
    resolver_factory: ResolverFactory | None = None,
    watch: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
    transform: SettingsTransform | None = None,
) -> Flask:
    """Build the provider app.

    ``settings`` wins when given; otherwise ``config_path`` is loaded (a
    ConfigError lists every problem); with neither, the empty configuration
    trusts nobody, so nothing verifies. ``watch`` (default: whenever a
    configuration file is known and its reload interval is not 0) starts the
    reload watcher.
    ``secret_loader`` reads ``k8s://`` Secret-held keys and ``pull_secret_loader``
    registry pull secrets (default: both from the
    cluster the process runs in).
    ``transform`` is applied to every configuration the app takes: the
    first one (given or loaded) and each reload. Whatever it adds must be
    reflected in the ``generation`` it returns, so cached verdicts computed
    without it are never reused. A ConfigError it raises on reload rejects
    the new configuration like any other configuration problem.
    """
    secret_loader = secret_loader or _cluster_secret
    pull_secret_loader = pull_secret_loader or load_pull_secret_ref
    if settings is None:
        settings = (
            load_settings(config_path, secret_loader=secret_loader, pull_secret_loader=pull_secret_loader)
            if config_path
            else Settings.default()
        )
    adjust: SettingsTransform = transform or _unchanged
    settings = adjust(settings)
    make_resolver = resolver_factory or default_resolver
    metrics = Metrics()
    # One pool for the life of the app: reloads replace services, not threads.
    executor = ThreadPoolExecutor(
        max_workers=max(4, 2 * settings.server.threads), thread_name_prefix="verify"
    )

    # The resolver (registry clients, their caches) survives reloads that leave
    # its inputs alone; in-flight checks may still be using the previous one.
    last_resolver: list[tuple[tuple[object, ...], BundleResolver | None]] = []

    def resolver_for(new: Settings) -> BundleResolver | None:
        inputs = (new.registries, new.cluster, new.limits, new.annotation_domain)
        if last_resolver and last_resolver[0][0] == inputs:
            return last_resolver[0][1]
        resolver = make_resolver(new)
        last_resolver[:] = [(inputs, resolver)]
        return resolver

    def build_service(new: Settings) -> ProviderService:
        verifier = build_verifier(new, resolver_for(new))
        return ProviderService(new, verifier, metrics=metrics, executor=executor, clock=clock)

    runtime = ProviderRuntime(build_service(settings), metrics=metrics)
    logger.info(
        "provider configured",
        extra={
            FIELDS: {
                "event": "start",
                "generation": settings.generation,
                "config": settings.source_path,
                "keys": [spec.name for spec in settings.key_specs],
                "keyless_identities": len(settings.identities),
                "registries": settings.registries is not None,
                "deadline_ms": settings.server.deadline_milliseconds,
            }
        },
    )

    app = Flask("provider")
    app.extensions[EXTENSION] = runtime
    app.register_blueprint(blueprint)
    register_error_handlers(app)
    # Gatekeeper's endpoint answers before Flask's routing; Flask serves everything else.
    app.wsgi_app = ValidateEndpoint(runtime, app.wsgi_app)  # type: ignore[method-assign]

    source = config_path or settings.source_path
    interval = settings.server.reload_interval_seconds
    if source is not None:
        path = str(Path(source))

        def rebuild() -> ProviderService:
            return build_service(
                adjust(
                    load_settings(path, secret_loader=secret_loader, pull_secret_loader=pull_secret_loader)
                )
            )

        watcher = ConfigWatcher(runtime, rebuild, interval_seconds=interval or 5.0, clock=clock)
        app.extensions[WATCHER_EXTENSION] = watcher
        if watch if watch is not None else interval > 0:
            watcher.start()
    return app

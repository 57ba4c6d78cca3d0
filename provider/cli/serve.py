"""``manifest-provider serve``: answer Gatekeeper's external-data calls over mutual TLS 1.3.

With ``--config FILE`` everything comes from the configuration file (the
``server:`` section for listening, workers and TLS); the options below
override single settings. Without ``--config`` the provider runs on an
embedded development configuration: a development CA with server and client
certificates in ``./dev-certs/`` (reused while valid), the shipped demo key
as the only trusted key, ``https://127.0.0.1:8443``. It then prints a ``curl``
command that asks for a verdict on the shipped signed sample and the
Gatekeeper ``Provider`` resource for this endpoint.

Every configuration problem is reported at once (exit 2) before anything
listens.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import logging
import shlex
import socket
import sys
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from provider.certs import GATEKEEPER_CLIENT_DNS_NAME, DevCertPaths, ensure_dev_certs, write_file
from provider.cli.verify import parse_key_args
from provider.core.keys import PublicKey
from provider.errors import ConfigError, ManifestProviderError

log = logging.getLogger(__name__)

DEFAULT_DEV_CERTS = Path("dev-certs")
DEV_LISTEN = "127.0.0.1:8443"
DEMO_KEY_NAME = "demo"
DEMO_PUBLIC_KEY = "demo.pub"
DEMO_SAMPLE = "sample-deployment.signed.yaml"
# The path Gatekeeper's Provider URL names.
VERDICT_PATH = "/validate"
PROVIDER_NAME = "manifest-provider"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve verdicts to Gatekeeper (mutual TLS 1.3)",
        description=(
            "Serve verdicts to OPA Gatekeeper over mutual TLS 1.3. Without --config, run on a "
            "development configuration with generated certificates and the shipped demo key."
        ),
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="provider configuration file (YAML)")
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also trust this public key, on top of the configuration (repeatable)",
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (port 0 picks a free port)")
    p.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help="also serve GET /healthz and /readyz (status only) over plain HTTP here, for kubelet probes; "
        "same as server.healthListen",
    )
    p.add_argument(
        "--dev-certs",
        type=Path,
        metavar="DIR",
        help=f"directory of the generated development certificates (default ./{DEFAULT_DEV_CERTS}/); "
        "with --config, serve with these instead of the configured TLS files",
    )
    p.add_argument(
        "--insecure-plain-http",
        action="store_true",
        help="UNSAFE: serve plain HTTP without TLS or client authentication",
    )
    p.add_argument("--workers", type=int, metavar="N", help="worker processes")
    p.add_argument("--threads", type=int, metavar="N", help="event-loop threads per worker process")
    p.set_defaults(func=run)


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """What ``run`` decided before anything listens."""

    settings: Any
    options: Any
    # The configuration as loaded, and what turns it into ``settings`` (again on every reload).
    loaded: Any
    transform: Callable[[Any], Any]
    dev_certs: DevCertPaths | None
    dev_certs_created: bool
    development: bool
    # Where request.json goes (the development certificates' directory, even without certificates).
    dev_directory: Path


def run(args: argparse.Namespace) -> int:
    from provider.logs import configure_logging

    configure_logging()
    plan = _plan(args)
    listener = _bind(plan.options.host, plan.options.port)
    options = dataclasses.replace(plan.options, port=listener.getsockname()[1], listen_fd=listener.fileno())
    if options.health_host is not None:
        health = _bind(options.health_host, options.health_port)
        options = dataclasses.replace(
            options, health_port=health.getsockname()[1], health_listen_fd=health.fileno()
        )
    _print_banner(plan, options, sys.stdout)
    return _serve(plan, options)


def _plan(args: argparse.Namespace) -> _Plan:
    """Validate the configuration and the options; ConfigError lists every problem."""
    from provider import config as config_module

    problems: list[str] = []
    development = args.config is None
    dev_paths: DevCertPaths | None = None
    created = False
    use_dev_certs = not args.insecure_plain_http and (development or args.dev_certs is not None)
    if use_dev_certs:
        try:
            dev_paths, created = ensure_dev_certs(args.dev_certs or DEFAULT_DEV_CERTS)
        except (OSError, ManifestProviderError) as exc:
            detail = exc.diagnostics() if isinstance(exc, ManifestProviderError) else str(exc)
            problems.append(f"--dev-certs: cannot create development certificates: {detail}")

    settings: Any = None
    try:
        if development:
            settings = config_module.parse_settings(_development_document(dev_paths))
        else:
            from provider.sources.cluster import load_pull_secret_ref, load_secret_key

            # Secret-held keys and registry pull secrets come from the cluster the provider runs in.
            settings = config_module.load_settings(
                args.config, secret_loader=load_secret_key, pull_secret_loader=load_pull_secret_ref
            )
    except ConfigError as exc:
        problems.extend(exc.problems)

    extra_keys: tuple[PublicKey, ...] = ()
    try:
        extra_keys = parse_key_args(args.key, flag="--key", require_names=True)
    except ConfigError as exc:
        problems.extend(exc.problems)
    listen = _parse_listen(args.listen, problems) if args.listen else None
    health_listen = (
        _parse_listen(args.health_listen, problems, flag="--health-listen") if args.health_listen else None
    )
    for flag in ("workers", "threads"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            problems.append(f"--{flag} must be a positive integer, got {value}")

    options = None
    loaded = settings
    if settings is not None:
        settings = _with_overrides(settings, args, dev_paths, extra_keys, problems)
        options = _server_options(settings, listen, health_listen, problems)
    if problems or settings is None or options is None:
        raise ConfigError(problems)

    def transform(new: Any) -> Any:
        # The same overrides for every configuration a worker loads, so a reload keeps them.
        found: list[str] = []
        out = _with_overrides(new, args, dev_paths, extra_keys, found)
        if found:
            raise ConfigError(found)
        return out

    return _Plan(
        settings,
        options,
        loaded,
        transform,
        dev_paths,
        created,
        development,
        args.dev_certs or DEFAULT_DEV_CERTS,
    )


def _development_document(dev: DevCertPaths | None) -> dict[str, Any]:
    """The embedded configuration of ``serve`` without ``--config``."""
    demo = resources.files("provider") / "data" / DEMO_PUBLIC_KEY
    server: dict[str, Any] = {"listen": DEV_LISTEN}
    if dev is not None:
        server["tls"] = {
            "certFile": str(dev.server_cert.resolve()),
            "keyFile": str(dev.server_key.resolve()),
            "clientCAFile": str(dev.ca_cert.resolve()),
            "clientDNSNames": [GATEKEEPER_CLIENT_DNS_NAME],
        }
    else:
        server["tls"] = {"insecurePlainHTTP": True}
    return {"keys": [{"name": DEMO_KEY_NAME, "pem": demo.read_text("utf-8")}], "server": server}


def _parse_listen(text: str, problems: list[str], *, flag: str = "--listen") -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        problems.append(f"{flag} must be HOST:PORT with a port 0-65535, got {text!r}")
        return None
    return host, int(port)


def _with_overrides(
    settings: Any,
    args: argparse.Namespace,
    dev: DevCertPaths | None,
    extra_keys: Sequence[PublicKey],
    problems: list[str],
) -> Any:
    from provider.config import KeySpec, TlsSettings

    server = settings.server
    tls = server.tls
    if dev is not None and args.config is not None:
        # --config with --dev-certs: the generated files replace the configured ones.
        tls = dataclasses.replace(
            tls,
            cert_file=str(dev.server_cert.resolve()),
            key_file=str(dev.server_key.resolve()),
            client_ca_file=str(dev.ca_cert.resolve()),
        )
    if args.insecure_plain_http:
        tls = TlsSettings(client_dns_names=(), insecure_plain_http=True)
    changes: dict[str, Any] = {"tls": tls}
    if args.health_listen:
        changes["health_listen"] = args.health_listen
    if args.workers is not None and args.workers > 0:
        changes["workers"] = args.workers
    if args.threads is not None and args.threads > 0:
        changes["threads"] = args.threads
    settings = dataclasses.replace(settings, server=dataclasses.replace(server, **changes))
    if not extra_keys:
        return settings
    taken = {k.name for k in settings.keys}
    for key in extra_keys:
        if key.name in taken:
            problems.append(f"--key {key.name}: a trusted key with this name is already configured")
        taken.add(key.name)
    # Trust changed, so verdicts computed under the configuration alone must not be reused.
    digest = hashlib.sha256(settings.generation.encode())
    for key in extra_keys:
        digest.update(f"\0{key.name}\0{key.fingerprint}".encode())
    return dataclasses.replace(
        settings,
        keys=tuple(settings.keys) + tuple(extra_keys),
        key_specs=tuple(settings.key_specs) + tuple(KeySpec(k.name, "path", "--key") for k in extra_keys),
        generation=digest.hexdigest()[:32],
    )


def _server_options(
    settings: Any,
    listen: tuple[str, int] | None,
    health_listen: tuple[str, int] | None,
    problems: list[str],
) -> Any:
    from provider.server import ServerOptions
    from provider.tlsctx import build_server_context

    tls = settings.server.tls
    problems.extend(tls.serving_problems())
    options = ServerOptions.from_settings(settings.server, listen=listen, health_listen=health_listen)
    if options.tls is not None or options.insecure_plain_http:
        problems.extend(p for p in options.problems() if p not in problems)
    if options.tls is not None:
        # Build the TLS context once now: unusable files are a configuration problem.
        try:
            build_server_context(options.tls)
        except ManifestProviderError as exc:
            problems.append(f"server.tls: {exc.diagnostics()}")
    return options


def _bind(host: str, port: int) -> socket.socket:
    """Bind before forking workers: a busy port is reported once, and port 0 is resolved."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError([f"cannot listen on {host}:{port}: {exc.strerror or exc}"]) from exc


def _serve(plan: _Plan, options: Any) -> int:
    from provider.app import create_app
    from provider.server import ProviderServer
    from provider.web import runtime_of

    def load_app() -> Any:
        # Runs in each worker after the fork. The command-line overrides (--key among them) are
        # applied to the loaded configuration and again to every reloaded one.
        app = create_app(plan.loaded, transform=plan.transform)
        # The TLS files were loaded and checked before the fork (or plain HTTP was chosen).
        runtime_of(app).mark_tls_ready()
        return app

    ProviderServer(options, load_app).serve()
    return 0


# -- the development banner -----------------------------------------------------------


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - mapping a wildcard to something a client can dial
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _print_banner(plan: _Plan, options: Any, out: TextIO) -> None:
    base = f"{options.scheme}://{_url_host(options.host)}:{options.port}"
    url = base + VERDICT_PATH
    text = [f"manifest-provider: serving verdicts on {url}\n"]
    if options.health_host is not None:
        health = f"http://{_url_host(options.health_host)}:{options.health_port}"
        text.append(f"manifest-provider: health probes on {health} (GET /healthz, GET /readyz)\n")
    if plan.development:
        text += _development_text(plan, url)
    # One write: whoever waits for the first line finds everything it mentions in place.
    out.write("".join(text))
    out.flush()


def _sample_request() -> bytes:
    from provider.core.limits import DEFAULT_LIMITS
    from provider.core.safeyaml import load_documents
    from provider.wire import encode_key, encode_request

    sample = (resources.files("provider") / "data" / DEMO_SAMPLE).read_bytes()
    documents = load_documents(sample, limits=DEFAULT_LIMITS)
    return encode_request([encode_key(documents[0])])


def _development_text(plan: _Plan, url: str) -> list[str]:
    out: list[str] = []
    dev = plan.dev_certs
    where = plan.dev_directory
    request_file = where / "request.json"
    write_file(request_file, _sample_request(), private=False)
    keys = ", ".join(f"{k.name} (sha256 {k.fingerprint[:16]}...)" for k in plan.settings.keys)
    out.append(f"Development configuration: trusted keys {keys}.\n")
    curl = ["curl", "-sS"]
    if dev is not None:
        state = "created" if plan.dev_certs_created else "reused"
        out.append(f"Development CA, server and client certificates {state} in {where}/\n")
        curl += ["--cacert", str(dev.ca_cert), "--cert", str(dev.client_cert), "--key", str(dev.client_key)]
    curl += ["-H", "Content-Type: application/json", "-d", f"@{request_file}", url]
    out.append("\nAsk for a verdict on the shipped signed sample:\n\n")
    out.append("  " + shlex.join(curl) + "\n")
    if dev is None:
        return out
    ca_bundle = base64.b64encode(dev.ca_cert.read_bytes()).decode("ascii")
    timeout = max(1, int(plan.settings.server.provider_timeout_seconds))
    out.append(
        "\nGatekeeper Provider for this endpoint (the server certificate names localhost and 127.0.0.1;\n"
        "in a cluster, issue one for the provider's Service name, see `manifest-provider certs`):\n\n"
    )
    out.append(
        "apiVersion: externaldata.gatekeeper.sh/v1beta1\n"
        "kind: Provider\n"
        "metadata:\n"
        f"  name: {PROVIDER_NAME}\n"
        "spec:\n"
        f"  url: {url}\n"
        f"  timeout: {timeout}\n"
        f"  caBundle: {ca_bundle}\n\n"
    )
    return out

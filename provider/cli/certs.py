"""``manifest-provider certs``: TLS material for running next to Gatekeeper without cert-manager.

Writes, for the Service ``NAME`` in namespace ``NS``:

* ``ca.crt`` / ``ca.key``: a private CA (kept so the server certificate can be
  renewed later under the same CA, which keeps the Provider's ``caBundle``
  unchanged; pass ``--ca-cert``/``--ca-key`` to reuse an existing one);
* ``tls.crt`` / ``tls.key``: the server certificate for the Service's DNS
  names (``NAME``, ``NAME.NS``, ``NAME.NS.svc``, ``NAME.NS.svc.cluster.local``),
  named as a ``kubernetes.io/tls`` Secret expects them;
* ``cabundle.b64``: base64 of ``ca.crt``, the value of ``Provider.spec.caBundle``;
* ``provider.yaml``: the Gatekeeper ``Provider`` resource for this Service.

Private keys are written with mode 0600. The command prints the ``kubectl``
commands that load the files into the cluster.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from pathlib import Path
from typing import TextIO

import yaml

from provider.certs import (
    CertUsage,
    KeyedCertificate,
    generate_ca,
    issue_certificate,
    load_keyed,
    write_file,
    write_keyed,
)
from provider.cli import EXIT_OK, fail
from provider.errors import KeyMaterialError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_PORT = 8443
DEFAULT_TIMEOUT_SECONDS = 3
VERDICT_PATH = "/validate"


def service_dns_names(service: str, namespace: str, cluster_domain: str = "cluster.local") -> list[str]:
    """Every name a client inside the cluster may use for the Service."""
    base = f"{service}.{namespace}.svc"
    return [service, f"{service}.{namespace}", base, f"{base}.{cluster_domain}"]


def provider_url(service: str, namespace: str, port: int = DEFAULT_PORT) -> str:
    return f"https://{service}.{namespace}.svc:{port}{VERDICT_PATH}"


def provider_resource(
    *, name: str, url: str, ca_bundle: str, timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
) -> dict[str, object]:
    """The Gatekeeper ``Provider`` (externaldata.gatekeeper.sh/v1beta1)."""
    return {
        "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
        "kind": "Provider",
        "metadata": {"name": name},
        "spec": {"url": url, "timeout": timeout_seconds, "caBundle": ca_bundle},
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "certs",
        help="write a CA, server certificate and Provider caBundle for the provider's Service",
        description=(
            "Write a private CA, a server certificate for the Service's DNS names, the Provider's "
            "caBundle and the Provider resource: TLS for Gatekeeper without cert-manager."
        ),
    )
    p.add_argument("--service", required=True, metavar="NAME", help="name of the provider's Service")
    p.add_argument("--namespace", required=True, metavar="NS", help="namespace of the Service")
    p.add_argument("--out", type=Path, default=Path(), metavar="DIR", help="output directory (default .)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"Service port (default {DEFAULT_PORT})")
    p.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"Provider timeout in whole seconds (default {DEFAULT_TIMEOUT_SECONDS})",
    )
    p.add_argument("--provider-name", default="manifest-provider", help="name of the Provider resource")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain")
    p.add_argument("--days", type=int, default=365, help="server certificate validity in days (default 365)")
    p.add_argument("--ca-cert", type=Path, metavar="FILE", help="reuse this CA certificate (with --ca-key)")
    p.add_argument("--ca-key", type=Path, metavar="FILE", help="private key of --ca-cert")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    problems = []
    for what, value in (("--service", args.service), ("--namespace", args.namespace)):
        if not _DNS_LABEL.match(value):
            problems.append(f"{what} must be a DNS label (lower case, digits, '-'), got {value!r}")
    if not 0 < args.port < 65536:
        problems.append(f"--port must be 1-65535, got {args.port}")
    if args.timeout < 1:
        problems.append(f"--timeout must be a whole number of seconds >= 1, got {args.timeout}")
    if args.days < 1:
        problems.append(f"--days must be >= 1, got {args.days}")
    if bool(args.ca_cert) != bool(args.ca_key):
        problems.append("--ca-cert and --ca-key must be given together")
    if problems:
        return fail("; ".join(problems))

    out: Path = args.out
    try:
        if args.ca_cert:
            ca = load_keyed(args.ca_cert, args.ca_key)
            new_ca = False
        else:
            ca = generate_ca(f"manifest-provider CA for {args.service}.{args.namespace}", valid_days=3650)
            new_ca = True
        names = service_dns_names(args.service, args.namespace, args.cluster_domain)
        server = issue_certificate(ca, usage=CertUsage.SERVER, dns_names=names, valid_days=args.days)
    except KeyMaterialError as exc:
        return fail(exc.diagnostics())
    try:
        _write(out, ca, server, new_ca=new_ca, args=args)
    except OSError as exc:
        return fail(f"cannot write to {out}: {exc.strerror or exc}")
    _print_next_steps(out, args, sys.stdout)
    return EXIT_OK


def _write(
    out: Path, ca: KeyedCertificate, server: KeyedCertificate, *, new_ca: bool, args: argparse.Namespace
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ca_pem = ca.certificate_pem()
    if new_ca:
        write_keyed(ca, out / "ca.crt", out / "ca.key")
    else:
        write_file(out / "ca.crt", ca_pem, private=False)
    write_keyed(server, out / "tls.crt", out / "tls.key")
    bundle = base64.b64encode(ca_pem).decode("ascii")
    write_file(out / "cabundle.b64", (bundle + "\n").encode(), private=False)
    provider = provider_resource(
        name=args.provider_name,
        url=provider_url(args.service, args.namespace, args.port),
        ca_bundle=bundle,
        timeout_seconds=args.timeout,
    )
    write_file(out / "provider.yaml", yaml.safe_dump(provider, sort_keys=False).encode(), private=False)


def _print_next_steps(out: Path, args: argparse.Namespace, stream: TextIO) -> None:
    ns = args.namespace
    lines = [
        f"wrote {out}/ca.crt, ca.key, tls.crt, tls.key, cabundle.b64, provider.yaml",
        "load the server certificate and apply the Provider:",
        f"  kubectl -n {ns} create secret tls {args.service}-tls --cert={out}/tls.crt --key={out}/tls.key",
        f"  kubectl apply -f {out}/provider.yaml",
        f"keep {out}/ca.key offline; renew later with --ca-cert {out}/ca.crt --ca-key {out}/ca.key "
        "so the caBundle stays the same",
    ]
    print("\n".join(lines), file=stream)

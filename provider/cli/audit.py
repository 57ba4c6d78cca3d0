"""``manifest-provider audit``: verify the objects already in a cluster.

Like ``kubectl sigstore verify-resource`` for many objects at once: pick
objects by kind/namespace/label selector (``--kind``), or by the ``match``
of every K8sSignedManifests constraint in the cluster (the default), and
verify each one with the provider's configuration (``--config``) and/or
extra keys (``--key NAME=PATH``). Prints a table or JSON with a summary;
exits 1 when any object is not verified or could not be checked.

The cluster is reached with in-cluster credentials when run in a pod, else
with the kubeconfig (``--kubeconfig``/``$KUBECONFIG``, ``--context``). The
user needs list on the audited kinds (and on namespaces for
``namespaceSelector``), get on the ConfigMaps of ConfigMap-held bundles.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from provider.cli import EXIT_NOT_VERIFIED, EXIT_OK, EXIT_USAGE, fail
from provider.cli.output import render_table
from provider.cli.verify import parse_key_args
from provider.config import load_settings
from provider.core.verifier import TrustPolicy, Verifier
from provider.errors import ConfigError, ManifestProviderError
from provider.sources.resolver import resolver_from_settings

if TYPE_CHECKING:
    from provider.audit import AuditReport
    from provider.sources.cluster import ClusterClient


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit",
        help="verify the objects in a cluster (by kind or by the K8sSignedManifests constraints)",
        description=(
            "Verify objects already in a cluster against their signed manifests. Without --kind, "
            "audit what every K8sSignedManifests constraint selects."
        ),
    )
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="provider configuration file (trust, rules, limits)"
    )
    p.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also trust this public key (repeatable)",
    )
    p.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="KIND",
        help="audit this kind (Deployment, deploy, Deployment.apps, ...; repeatable) instead of the constraints",
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="only this namespace (repeatable)",
    )
    p.add_argument(
        "--exclude-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="skip this namespace (repeatable)",
    )
    p.add_argument("-l", "--selector", metavar="SELECTOR", help="label selector, e.g. app=web,tier!=cache")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument(
        "--concurrency", type=int, default=8, metavar="N", help="objects verified at once (default 8)"
    )
    p.add_argument(
        "--page-size", type=int, default=250, metavar="N", help="objects per list call (default 250)"
    )
    p.add_argument(
        "--kubeconfig", metavar="FILE", help="kubeconfig file (default $KUBECONFIG or ~/.kube/config)"
    )
    p.add_argument("--context", metavar="NAME", help="kubeconfig context")
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="API call timeout (default 10)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The Kubernetes client is imported only by the commands that talk to a cluster.
    from provider.audit import Auditor, Selection
    from provider.sources.cluster import ClusterClient, api_client

    if args.concurrency < 1 or args.page_size < 1 or args.timeout <= 0:
        return fail("--concurrency and --page-size must be >= 1, --timeout > 0")
    if not args.kind and (args.namespace or args.selector or args.exclude_namespace):
        return fail(
            "--namespace, --exclude-namespace and --selector select objects of --kind; give --kind too"
        )
    try:
        cluster = ClusterClient(
            api_client(kubeconfig=args.kubeconfig, context=args.context), timeout_seconds=args.timeout
        )
        verifier = _verifier(args, cluster)
        auditor = Auditor(
            cluster,
            verifier,
            concurrency=args.concurrency,
            page_size=args.page_size,
            progress=_progress_printer(sys.stderr),
        )
        if args.kind:
            selections = [
                Selection(
                    types=auditor.resolve_kinds(args.kind),
                    namespaces=tuple(args.namespace),
                    excluded_namespaces=tuple(args.exclude_namespace),
                    label_selector_text=args.selector,
                )
            ]
        else:
            selections = auditor.constraints()
            if not selections:
                return fail("no K8sSignedManifests constraints in the cluster; pass --kind to choose objects")
        report = auditor.run(selections)
    except ConfigError as exc:
        return fail(exc.diagnostics(), EXIT_USAGE)
    except ManifestProviderError as exc:
        return fail(exc.diagnostics(), EXIT_USAGE)
    _clear_progress(sys.stderr)
    print_report(report, fmt=args.output, stream=sys.stdout)
    if report.ok:
        return EXIT_OK
    s = report.summary()
    return fail(
        f"{s['failed']} of {s['total']} object(s) not verified, {s['errors']} could not be checked",
        EXIT_NOT_VERIFIED,
    )


def _verifier(args: argparse.Namespace, cluster: ClusterClient) -> Verifier:
    from provider.sources.cluster import load_pull_secret_ref, load_secret_key

    keys = parse_key_args(args.key)
    if args.config is None:
        if not keys:
            raise ConfigError(["no trust given: pass --config FILE and/or --key NAME=PATH"])
        return Verifier(TrustPolicy(keys=keys))
    # Secret-held keys (k8s://NAMESPACE/SECRET) are read with the auditor's own credentials.
    settings = load_settings(
        args.config,
        secret_loader=lambda ref: load_secret_key(ref, cluster=cluster),
        pull_secret_loader=lambda ref: load_pull_secret_ref(ref, cluster=cluster),
    )
    trust = settings.trust
    names = {k.name for k in trust.keys}
    clash = sorted(k.name for k in keys if k.name in names)
    if clash:
        raise ConfigError([f"--key {n}: the configuration already has a key named {n!r}" for n in clash])
    return Verifier(
        TrustPolicy(keys=trust.keys + keys, identities=trust.identities, trusted_root=trust.trusted_root),
        rules=settings.rules,
        limits=settings.limits,
        domain=settings.annotation_domain,
        resolver=resolver_from_settings(settings, cluster=cluster),
    )


# -- output ------------------------------------------------------------------------


def print_report(report: AuditReport, *, fmt: str, stream: TextIO) -> None:
    from provider.audit import Outcome

    if fmt == "json":
        stream.write(json.dumps(report.to_json(), indent=2) + "\n")
        return
    constraints = any(e.constraint for e in report.entries)
    header = ["OBJECT", "RESULT", "REASON", "SIGNERS", "DETAIL"]
    if constraints:
        header.insert(0, "CONSTRAINT")
    rows = [header]
    for e in report.entries:
        v = e.verdict
        reason = v.reason.value if v else "ERROR"
        signers = ",".join(s.name for s in v.signers) if v and v.signers else "-"
        if e.outcome is Outcome.ERROR:
            detail = e.error or ""
        elif v and v.diff:
            shown = [f"{d.path} ({d.op.value})" for d in v.diff[:3]]
            more = len(v.diff) - len(shown)
            detail = "; ".join(shown) + (f" (+{more} more)" if more > 0 else "")
        else:
            detail = v.message if v else ""
        row = [str(e.object), e.outcome.value, reason, signers, _clip(detail)]
        if constraints:
            row.insert(0, e.constraint or "-")
        rows.append(row)
    stream.write(render_table(rows))
    s = report.summary()
    by = ", ".join(f"{k}={n}" for k, n in s["failedByReason"].items())
    stream.write(
        f"\n{s['total']} object(s): {s['verified']} verified, {s['failed']} failed"
        f"{f' ({by})' if by else ''}, {s['errors']} error(s)\n"
    )


def _clip(text: str, width: int = 100) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def _progress_printer(stream: TextIO) -> Callable[[int, int | None], None] | None:
    """Progress on stderr, only when it is a terminal (never in logs or pipes)."""
    if not stream.isatty():
        return None

    def show(done: int, total: int | None) -> None:
        stream.write(f"\raudit: {done} checked" + (f" of {total}" if total is not None else "") + " ")
        stream.flush()

    return show


def _clear_progress(stream: TextIO) -> None:
    if stream.isatty():
        stream.write("\r\x1b[K")
        stream.flush()

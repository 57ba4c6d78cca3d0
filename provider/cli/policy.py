"""``manifest-provider policy test``: the violations a cluster would give, offline.

Runs a ConstraintTemplate's Rego with a real engine (regorus) against each
object and constraint, answering ``external_data`` calls either from a
running provider (``--provider-url`` over mutual TLS) or from the provider's
own request handler in-process (``--config`` or ``--key NAME=PATH``; no
network unless a bundle reference needs a registry). Exit 1 when any
violation's enforcement action is ``deny``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from provider.cli import EXIT_NOT_VERIFIED, EXIT_OK, EXIT_USAGE, fail
from provider.core.limits import DEFAULT_LIMITS
from provider.core.safeyaml import load_documents
from provider.errors import InputError, ManifestProviderError
from provider.policy import (
    DEFAULT_TIMEOUT_SECONDS,
    Constraint,
    EnforcementAction,
    EngineKind,
    ExternalData,
    HandlerTransport,
    HttpsTransport,
    Operation,
    PolicyEvaluator,
    Template,
    Transport,
    UserInfo,
    Violation,
    admission_review,
    audit_review,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "policy",
        help="evaluate Gatekeeper policies offline",
        description="Work with the Gatekeeper ConstraintTemplates that enforce signed manifests.",
    )
    actions = p.add_subparsers(dest="policy_command", metavar="ACTION")
    actions.required = True
    t = actions.add_parser(
        "test",
        help="print the violations a cluster would give for objects",
        description=(
            "Evaluate a ConstraintTemplate and its constraints against objects, calling the provider for "
            "external data as Gatekeeper does. Exit 1 when any violation has enforcementAction deny."
        ),
    )
    t.add_argument("--template", required=True, help="ConstraintTemplate YAML file")
    t.add_argument("--constraint", required=True, action="append", help="constraint YAML file (repeatable)")
    t.add_argument(
        "-f", "--filename", required=True, action="append", help="objects to review, YAML/JSON (repeatable)"
    )
    remote = t.add_argument_group("a running provider (mutual TLS)")
    remote.add_argument("--provider-url", help="the Provider's spec.url, e.g. https://host:8443/validate")
    remote.add_argument("--ca", help="CA bundle that signed the provider's serving certificate")
    remote.add_argument("--cert", help="client certificate Gatekeeper presents")
    remote.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="the Provider's spec.timeout, seconds"
    )
    local = t.add_argument_group("the provider in-process")
    local.add_argument("--config", help="provider configuration file")
    t.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY",
        help="with --provider-url: the client certificate's private key; otherwise a trusted public key "
        "as [NAME=]PATH (repeatable)",
    )
    t.add_argument(
        "--operation",
        choices=[o.value for o in Operation if o is not Operation.CONNECT],
        default=Operation.CREATE.value,
        help="admission operation to simulate (default CREATE)",
    )
    t.add_argument(
        "--audit", action="store_true", help="review as the audit controller does (no user, no operation)"
    )
    t.add_argument("--namespace", default="", help="namespace for objects that name none")
    t.add_argument("--user", default="kubernetes-admin", help="requesting username (admission only)")
    t.add_argument("--group", action="append", default=None, help="requesting user's group (repeatable)")
    t.add_argument("--dry-run", action="store_true", help="mark the admission request as a dry run")
    t.add_argument("--engine", choices=[e.value for e in EngineKind], default=EngineKind.REGORUS.value)
    t.add_argument("-o", "--output", choices=("table", "json"), default="table")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        template = Template.from_file(args.template)
        constraints = [Constraint.from_file(c) for c in args.constraint]
        objects = [obj for name in args.filename for obj in read_objects(name)]
        transport = build_transport(args)
        evaluator = PolicyEvaluator(template, ExternalData(default=transport), engine=EngineKind(args.engine))
    except ManifestProviderError as exc:
        return fail(exc.diagnostics(), EXIT_USAGE)
    strays = [c.name for c in constraints if c.kind != template.kind]
    if strays:
        return fail(f"constraint(s) {', '.join(strays)} are not of kind {template.kind}", EXIT_USAGE)
    if not objects:
        return fail("no Kubernetes objects found in the input", EXIT_USAGE)
    for c in constraints:
        for criterion in c.match.unevaluated:
            sys.stderr.write(
                f"manifest-provider: note: constraint {c.name}: spec.match.{criterion} needs the cluster; "
                "treated as matching\n"
            )
    user = UserInfo(args.user, tuple(args.group or ("system:authenticated",)))
    results: list[tuple[dict[str, Any], list[Violation]]] = []
    for obj in objects:
        if args.audit:
            review = audit_review(obj, namespace=args.namespace)
        else:
            review = admission_review(
                obj,
                operation=Operation(args.operation),
                user=user,
                namespace=args.namespace,
                dry_run=args.dry_run,
            )
        results.append((review, evaluator.evaluate(review, constraints, audit=args.audit)))
    write_results(results, fmt=args.output, stream=sys.stdout)
    denied = sum(1 for _, vs in results for v in vs if v.enforcement_action == EnforcementAction.DENY)
    if denied:
        return fail(f"{denied} violation(s) with enforcementAction deny", EXIT_NOT_VERIFIED)
    return EXIT_OK


def build_transport(args: argparse.Namespace) -> Transport:
    if args.provider_url:
        if args.config:
            raise InputError("--provider-url and --config are exclusive")
        if not args.ca:
            raise InputError("--provider-url needs --ca (the CA of the provider's serving certificate)")
        if len(args.key) > 1:
            raise InputError("with --provider-url, --key names the one client private key")
        if bool(args.cert) != bool(args.key):
            raise InputError("--cert and --key go together")
        return HttpsTransport(
            url=args.provider_url,
            ca_file=args.ca,
            cert_file=args.cert,
            key_file=args.key[0] if args.key else None,
            timeout_seconds=args.timeout,
        )
    if args.ca or args.cert:
        raise InputError("--ca and --cert need --provider-url")
    return in_process_transport(config=args.config, keys=args.key)


def in_process_transport(*, config: str | None, keys: Sequence[str]) -> Transport:
    """The provider's request handler over the given configuration, without a server."""
    from provider.app import default_resolver
    from provider.cli.verify import parse_key_args
    from provider.config import Settings, build_verifier, load_settings
    from provider.service import ProviderService

    settings = load_settings(config) if config else Settings.default()
    if keys:
        settings = dataclasses.replace(settings, keys=settings.keys + parse_key_args(keys))
    service = ProviderService(settings, build_verifier(settings, default_resolver(settings)))
    return HandlerTransport(service.handle)


def read_objects(name: str) -> list[dict[str, Any]]:
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"{name}: {exc.strerror or exc}") from exc
    out: list[dict[str, Any]] = []
    for doc in load_documents(data, limits=DEFAULT_LIMITS):
        if not isinstance(doc, dict):
            raise InputError(f"{name}: a document is not a Kubernetes object")
        if doc.get("kind") == "List" or (
            isinstance(doc.get("kind"), str) and doc["kind"].endswith("List") and "items" in doc
        ):
            out.extend(item for item in doc.get("items") or () if isinstance(item, dict))
        else:
            out.append(doc)
    return out


def _object_text(review: dict[str, Any]) -> str:
    kind = review.get("kind", {}).get("kind", "")
    namespace = review.get("namespace") or ""
    name = review.get("name") or ""
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def write_results(
    results: Sequence[tuple[dict[str, Any], list[Violation]]], *, fmt: str, stream: TextIO
) -> None:
    if fmt == "json":
        doc = [
            {
                "object": _object_text(review),
                "violations": [v.to_json() for v in violations],
            }
            for review, violations in results
        ]
        stream.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        return
    rows = [("OBJECT", "CONSTRAINT", "ACTION", "MESSAGE")]
    for review, violations in results:
        if not violations:
            rows.append((_object_text(review), "-", "allowed", ""))
        for v in violations:
            rows.append(
                (
                    _object_text(review),
                    f"{v.constraint_kind}/{v.constraint_name}",
                    v.enforcement_action,
                    v.msg,
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        stream.write(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3] + "\n"
        )

"""``manifest-provider verify``: check signed files or live objects against their signatures.

The input is a signed YAML file (every resource in it is checked) or objects
as the cluster returns them (``kubectl get -o yaml|json``, including ``List``
objects). Exit 0 when every object verifies, 1 when any does not, 2 when the
input or options cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from provider.cli import EXIT_NOT_VERIFIED, EXIT_OK, EXIT_USAGE, fail
from provider.cli.output import print_verdicts
from provider.core.keyless import KeylessIdentity, identity_from_cli
from provider.core.keys import PublicKey, load_public_key
from provider.core.limits import DEFAULT_LIMITS
from provider.core.safeyaml import load_documents
from provider.core.trustroot import TrustedRoot
from provider.core.verdict import Verdict
from provider.core.verifier import TrustPolicy, Verifier
from provider.errors import ConfigError, InputError, ManifestProviderError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="verify signed manifests or live objects",
        description="Verify each object in FILE against its signature and signed manifest.",
    )
    p.add_argument("-f", "--filename", required=True, help="YAML or JSON file of objects ('-' for stdin)")
    p.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="[NAME=]PATH[,...]",
        help="trusted public key file(s); NAME defaults to the file name (repeatable)",
    )
    p.add_argument("--config", help="provider configuration file (keys, ignore rules, registries, limits)")
    p.add_argument("--namespace", help="namespace to assume for objects that name none")
    keyless = p.add_argument_group("keyless (cosign vocabulary)")
    keyless.add_argument("--trusted-root", help="trusted root JSON (dev.sigstore.trustedroot format)")
    keyless.add_argument("--certificate-identity", help="expected certificate identity (SAN)")
    keyless.add_argument(
        "--certificate-identity-regexp", help="regular expression the identity must fully match"
    )
    keyless.add_argument("--certificate-oidc-issuer", help="expected OIDC issuer")
    keyless.add_argument(
        "--certificate-oidc-issuer-regexp", help="regular expression the issuer must fully match"
    )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        verifier = build_verifier(args)
        objects = read_objects(args.filename)
    except (ConfigError, InputError) as exc:
        return fail(exc.diagnostics(), EXIT_USAGE)
    except ManifestProviderError as exc:
        return fail(exc.diagnostics(), EXIT_USAGE)
    if not objects:
        return fail(f"{args.filename}: no Kubernetes objects found", EXIT_USAGE)
    verdicts: list[Verdict] = []
    for obj in objects:
        try:
            verdicts.append(verifier.verify(obj, namespace=args.namespace))
        except InputError as exc:
            return fail(f"{args.filename}: {exc.diagnostics()}", EXIT_USAGE)
    print_verdicts(verdicts, fmt=args.output, stream=sys.stdout)
    failed = [v for v in verdicts if not v.verified]
    if failed:
        first = failed[0]
        return fail(
            f"{len(failed)} of {len(verdicts)} object(s) not verified; first: {first.reason.value}: {first.message}",
            EXIT_NOT_VERIFIED,
        )
    return EXIT_OK


def parse_key_args(
    values: Sequence[str], *, flag: str = "-k", require_names: bool = False
) -> tuple[PublicKey, ...]:
    """``-k a.pub,b.pub -k team=c.pub`` -> named public keys; names must be unique.

    Without ``NAME=`` a key is named after its file, unless ``require_names``.
    Raises :class:`ConfigError` listing every unusable key.
    """
    keys: list[PublicKey] = []
    problems: list[str] = []
    for value in values:
        for item in filter(None, (v.strip() for v in value.split(","))):
            name, sep, path = item.partition("=")
            if require_names and (not sep or not name or not path):
                problems.append(f"{flag} {item!r}: expected NAME=PATH")
                continue
            if not sep:
                path, name = item, Path(item).name
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                problems.append(f"{flag} {name}: cannot read key {path}: {exc.strerror or exc}")
                continue
            try:
                keys.append(load_public_key(data, name=name))
            except ManifestProviderError as exc:
                problems.append(f"{flag} {name}: cannot load public key {path}: {exc.diagnostics()}")
    names = [k.name for k in keys]
    problems += [f"key name {n!r} given twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise ConfigError(problems)
    return tuple(keys)


def keyless_from_args(args: argparse.Namespace) -> tuple[TrustedRoot | None, tuple[KeylessIdentity, ...]]:
    wants_identity = any(
        getattr(args, a, None)
        for a in (
            "certificate_identity",
            "certificate_identity_regexp",
            "certificate_oidc_issuer",
            "certificate_oidc_issuer_regexp",
        )
    )
    root: TrustedRoot | None = None
    if args.trusted_root:
        try:
            root = TrustedRoot.from_json(Path(args.trusted_root).read_bytes())
        except OSError as exc:
            raise ConfigError([f"trusted root {args.trusted_root}: {exc.strerror or exc}"]) from exc
    identities: tuple[KeylessIdentity, ...] = ()
    if wants_identity:
        if root is None:
            raise ConfigError(["--certificate-identity/--certificate-oidc-issuer need --trusted-root"])
        identities = (
            identity_from_cli(
                args.certificate_identity,
                args.certificate_identity_regexp,
                args.certificate_oidc_issuer,
                args.certificate_oidc_issuer_regexp,
            ),
        )
    return root, identities


def build_verifier(args: argparse.Namespace) -> Verifier:
    """The verifier the options describe: ``--config`` first, flags on top."""
    keys = parse_key_args(args.key)
    root, identities = keyless_from_args(args)
    if args.config:
        from provider.config import load_settings
        from provider.sources.cluster import load_pull_secret_ref, load_secret_key
        from provider.sources.resolver import resolver_from_settings

        settings = load_settings(
            args.config, secret_loader=load_secret_key, pull_secret_loader=load_pull_secret_ref
        )
        trust = settings.trust
        clash = sorted({k.name for k in keys} & {k.name for k in trust.keys})
        if clash:
            raise ConfigError([f"-k {n}: the configuration already has a key named {n!r}" for n in clash])
        return Verifier(
            TrustPolicy(
                keys=trust.keys + keys,
                identities=trust.identities + identities,
                trusted_root=root or trust.trusted_root,
            ),
            rules=settings.rules,
            limits=settings.limits,
            domain=settings.annotation_domain,
            resolver=resolver_from_settings(settings),
        )
    if not keys and not identities:
        raise ConfigError(["no trust given: pass -k KEY, --config FILE, or --trusted-root with an identity"])
    return Verifier(TrustPolicy(keys=keys, identities=identities, trusted_root=root))


def read_objects(filename: str) -> list[Mapping[str, Any]]:
    """Kubernetes objects from a YAML/JSON file; ``List`` kinds are flattened."""
    try:
        data = sys.stdin.buffer.read() if filename == "-" else Path(filename).read_bytes()
    except OSError as exc:
        raise InputError(f"{filename}: {exc.strerror or exc}") from exc
    try:
        documents = load_documents(data, limits=DEFAULT_LIMITS)
    except ManifestProviderError as exc:
        raise InputError(f"{filename}: {exc.diagnostics()}") from exc
    objects: list[Mapping[str, Any]] = []
    for index, doc in enumerate(documents):
        if not isinstance(doc, Mapping):
            raise InputError(f"{filename}: document {index} is not a mapping")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            for item in doc["items"]:
                if not isinstance(item, Mapping):
                    raise InputError(f"{filename}: document {index} has an item that is not a mapping")
                objects.append(item)
        else:
            objects.append(doc)
    return objects

"""``manifest-provider sign``: sign manifests the way k8s-manifest-sigstore does.

Input is one YAML file (``-`` for stdin) or a directory, whose ``*.yaml`` and
``*.yml`` files (top level only, sorted by name) are signed together as one
bundle. Every resource of the output carries the same message and signature
annotations, so each can be verified alone once applied.

Output goes to ``FILE.signed``; for a directory ``DIR`` to the sibling file
``DIR.yaml.signed`` (next to the directory, never inside it, so signing again
does not pick it up); ``--output -`` writes to stdout.

``--append`` adds a signature set to an already signed file (the existing
message is kept). ``--image REF`` stores the message as an OCI image signed
with the key and annotates the resources with ``resourceBundleRef: REF``
instead of embedding the message.

The key is a cosign key (``ENCRYPTED COSIGN/SIGSTORE PRIVATE KEY``, password
in ``$COSIGN_PASSWORD``; when unset, the empty password and then, on a
terminal, a prompt), PKCS#8 (encrypted or not), or a file holding base64 of
any of these.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from provider.cli import EXIT_OK, EXIT_USAGE, fail
from provider.core.annotations import DEFAULT_DOMAIN
from provider.core.cosignkey import PrivateKey, load_private_key
from provider.core.keys import pem_text
from provider.core.limits import DEFAULT_LIMITS
from provider.core.signing import bundle_ref_documents, sign_documents
from provider.errors import KeyMaterialError, ManifestProviderError

PASSWORD_ENV = "COSIGN_PASSWORD"  # noqa: S105 - the variable name, not a password
_SUFFIXES = (".yaml", ".yml")
_MAX_KEY_BYTES = 64 * 1024


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sign",
        help="sign manifests (annotation-embedded signature, or a signed OCI bundle)",
        description="Sign every resource of FILE (or of the YAML files in DIR) as one bundle.",
    )
    p.add_argument("-f", "--filename", required=True, metavar="FILE|DIR", help="YAML file, '-' or directory")
    p.add_argument(
        "-k", "--key", required=True, metavar="KEY", help="private key file (password: $COSIGN_PASSWORD)"
    )
    p.add_argument("--append", action="store_true", help="add a signature set to an already signed file")
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH|-",
        help="output file, '-' for stdout (default FILE.signed, or DIR.yaml.signed beside DIR)",
    )
    p.add_argument("--image", metavar="REF", help="push the message as a signed OCI image and reference it")
    p.add_argument(
        "--allow-insecure-registry", action="store_true", help="with --image: plain HTTP / unverified TLS"
    )
    p.add_argument(
        "--annotation-domain", default=DEFAULT_DOMAIN, help=f"annotation domain (default {DEFAULT_DOMAIN})"
    )
    p.set_defaults(func=run)


def read_input(name: str) -> tuple[bytes, Path | None]:
    """The bytes to sign and the input path (``None`` for stdin)."""
    limit = DEFAULT_LIMITS.max_message_bytes
    if name == "-":
        data = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"stdin is larger than {limit} bytes")
        return data, None
    path = Path(name)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
        if not files:
            raise ValueError(f"{name}: directory holds no *.yaml or *.yml file")
        parts: list[bytes] = []
        total = 0
        for file in files:
            content = file.read_bytes()
            total += len(content)
            if total > limit:
                raise ValueError(f"{name}: YAML files are larger than {limit} bytes together")
            parts.append(content)
        return b"\n---\n".join(parts), path
    if path.stat().st_size > limit:
        raise ValueError(f"{name} is larger than {limit} bytes")
    return path.read_bytes(), path


def default_output(path: Path | None) -> str:
    if path is None:
        return "-"
    if path.is_dir():
        resolved = path.resolve()
        return str(resolved.parent / f"{resolved.name}.yaml.signed")
    return f"{path}.signed"


def read_key(name: str) -> PrivateKey:
    path = Path(name)
    if path.stat().st_size > _MAX_KEY_BYTES:
        raise KeyMaterialError(f"{name} is larger than {_MAX_KEY_BYTES} bytes: not a key file")
    data = path.read_bytes()
    env = os.environ.get(PASSWORD_ENV)
    try:
        return load_private_key(data, password=(env or "").encode("utf-8"))
    except KeyMaterialError as exc:
        # Like cosign: without $COSIGN_PASSWORD, a terminal is asked for the
        # password of an encrypted key that the empty password does not open.
        if env is None and _is_encrypted(data) and sys.stdin.isatty():
            entered = getpass.getpass(f"Enter password for private key {name}: ")
            try:
                return load_private_key(data, password=entered.encode("utf-8"))
            except KeyMaterialError as again:
                raise KeyMaterialError(f"{name}: {again.diagnostics()}") from again
        raise KeyMaterialError(f"{name}: {exc.diagnostics()}") from exc


def _is_encrypted(data: bytes) -> bool:
    try:
        return b"ENCRYPTED" in pem_text(data, name="private key")
    except KeyMaterialError:
        return False


def _push_image(args: argparse.Namespace, raw: bytes, key: PrivateKey) -> str:
    """Push ``raw`` as a signed one-layer OCI image at ``args.image``; return its digest."""
    from provider.sources.oci import RegistrySettings, push_signed_bundle  # registry code only when asked

    settings = RegistrySettings.for_push(args.image, insecure=args.allow_insecure_registry)
    return push_signed_bundle(args.image, raw, key, settings=settings)


def run(args: argparse.Namespace) -> int:
    if args.image and args.append:
        return fail(
            "--append and --image cannot be combined: an image bundle has one signature set", EXIT_USAGE
        )
    try:
        text, source = read_input(args.filename)
    except (OSError, ValueError) as exc:
        return fail(_reason(exc, args.filename), EXIT_USAGE)
    try:
        key = read_key(args.key)
    except OSError as exc:
        return fail(_reason(exc, args.key), EXIT_USAGE)
    except KeyMaterialError as exc:
        return fail(exc.diagnostics(), EXIT_USAGE)
    output = args.output or default_output(source)
    try:
        if args.image:
            raw, signed = bundle_ref_documents(text, args.image, domain=args.annotation_domain)
            digest = _push_image(args, raw, key)
            sys.stderr.write(f"pushed signed bundle {args.image}@{digest}\n")
        else:
            signed = sign_documents(text, key, append=args.append, domain=args.annotation_domain)
    except ManifestProviderError as exc:
        return fail(f"{args.filename}: {exc.diagnostics()}", EXIT_USAGE)
    if output == "-":
        sys.stdout.buffer.write(signed)
        sys.stdout.buffer.flush()
        return EXIT_OK
    try:
        Path(output).write_bytes(signed)
    except OSError as exc:
        return fail(_reason(exc, output), EXIT_USAGE)
    sys.stderr.write(f"signed manifests written to {output}\n")
    return EXIT_OK


def _reason(exc: Exception, name: str) -> str:
    if isinstance(exc, OSError):
        return f"{name}: {exc.strerror or exc}"
    return str(exc)

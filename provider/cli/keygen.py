"""``manifest-provider keygen``: create a signing key pair, as ``cosign generate-key-pair`` does.

Writes ``PREFIX.key`` (ECDSA P-256 in cosign's ``ENCRYPTED COSIGN PRIVATE
KEY`` format, mode 0600) and ``PREFIX.pub`` (PEM public key). The password is
``$COSIGN_PASSWORD`` (it may be empty); without it, an interactive terminal is
asked twice. Existing files are never overwritten unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from provider.cli import EXIT_OK, EXIT_USAGE, fail
from provider.core.cosignkey import generate_keypair

PASSWORD_ENV = "COSIGN_PASSWORD"  # noqa: S105 - the variable name, not a password


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keygen",
        help="generate a cosign-compatible signing key pair",
        description="Generate PREFIX.key (cosign-encrypted, password from $COSIGN_PASSWORD) and PREFIX.pub.",
    )
    p.add_argument(
        "--output-key-prefix",
        default="cosign",
        metavar="PREFIX",
        help="path prefix of the two files (default: cosign -> cosign.key, cosign.pub)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing key files")
    p.set_defaults(func=run)


def read_password(*, confirm: bool) -> bytes | None:
    """``$COSIGN_PASSWORD``, else a terminal prompt; ``None`` when neither is available."""
    value = os.environ.get(PASSWORD_ENV)
    if value is not None:
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("Enter password for private key: ")
    if confirm and getpass.getpass("Enter password for private key again: ") != first:
        raise ValueError("passwords do not match")
    return first.encode("utf-8")


def _write(path: Path, data: bytes, *, mode: int, force: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if force:
        path.chmod(mode)


def run(args: argparse.Namespace) -> int:
    key_path = Path(f"{args.output_key_prefix}.key")
    pub_path = Path(f"{args.output_key_prefix}.pub")
    if not args.force:
        existing = [str(p) for p in (key_path, pub_path) if p.exists()]
        if existing:
            return fail(f"{', '.join(existing)} already exist(s); use --force to overwrite", EXIT_USAGE)
    try:
        password = read_password(confirm=True)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    if password is None:
        return fail(
            f"set {PASSWORD_ENV} (it may be empty) or run on a terminal to enter a password", EXIT_USAGE
        )
    private_pem, public_pem = generate_keypair(password=password)
    try:
        _write(key_path, private_pem, mode=0o600, force=args.force)
        _write(pub_path, public_pem, mode=0o644, force=args.force)
    except FileExistsError as exc:
        return fail(f"{exc.filename} already exists; use --force to overwrite", EXIT_USAGE)
    except OSError as exc:
        return fail(f"cannot write key files: {exc.strerror} ({exc.filename})", EXIT_USAGE)
    sys.stderr.write(f"Private key written to {key_path}\nPublic key written to {pub_path}\n")
    return EXIT_OK

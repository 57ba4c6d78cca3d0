"""The ``manifest-provider`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> None``, which adds an ``argparse`` parser whose
``func`` default is called with the parsed namespace and returns the exit
code. Exit codes everywhere: 0 success/verified, 1 checked and not verified,
2 bad usage or unreadable input (with a one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from provider import __version__
from provider.errors import ManifestProviderError

EXIT_OK = 0
EXIT_NOT_VERIFIED = 1
EXIT_USAGE = 2

# Subcommand modules, in the order their help is listed.
_COMMAND_MODULES = (
    "keygen",
    "sign",
    "verify",
    "defaults",
    "serve",
    "certs",
    "policy",
    "audit",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="manifest-provider",
        description="Verify sigstore-signed Kubernetes manifests; serve verdicts to OPA Gatekeeper.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        importlib.import_module(f"provider.cli.{name}").register(sub)
    return parser


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print a one-line reason on stderr and return ``code``."""
    sys.stderr.write(f"manifest-provider: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ManifestProviderError as exc:
        return fail(exc.diagnostics())
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())

"""``manifest-provider defaults``: show what the matcher does not compare, and why.

Two tables: the built-in ignore rules (fields never compared, in the
``ignoreFields`` schema a configuration file uses, so the JSON output can be
pasted into one and edited), and the Kubernetes defaulting table (fields the
API server adds, accepted only with the value shown).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from provider.cli import EXIT_OK, EXIT_USAGE, fail
from provider.cli.output import render_table
from provider.core.annotations import DEFAULT_DOMAIN
from provider.core.ignore import IgnoreRule, default_ignore_rules
from provider.core.k8sdefaults import POD_SPEC_LABEL, describe_table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "defaults",
        help="print the built-in ignore rules and the Kubernetes defaulting table",
        description="Print the fields the matcher ignores and the server defaults it accepts.",
    )
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument(
        "--domain",
        default=DEFAULT_DOMAIN,
        help=f"annotation domain of the signature annotations (default {DEFAULT_DOMAIN})",
    )
    p.set_defaults(func=run)


def _objects(rule: IgnoreRule) -> str:
    if not rule.objects:
        return "*"
    parts = []
    for sel in rule.objects:
        group = "core" if sel.group == "" else sel.group
        parts.append(f"{group}/{sel.kind}" if sel.group != "*" else sel.kind)
    return ",".join(parts)


def document(domain: str) -> dict[str, Any]:
    """The JSON form: ``ignoreFields`` (configuration schema) and ``defaults`` rows."""
    return {
        "ignoreFields": [rule.to_json() for rule in default_ignore_rules(domain)],
        "defaults": describe_table(),
    }


def run(args: argparse.Namespace) -> int:
    domain = args.domain
    if not isinstance(domain, str) or not domain or "/" in domain or any(c.isspace() for c in domain):
        return fail(
            f"--domain must be an annotation prefix such as {DEFAULT_DOMAIN}, got {domain!r}", EXIT_USAGE
        )
    doc = document(domain)
    out = sys.stdout
    if args.output == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
        return EXIT_OK
    out.write("Ignored fields (never compared):\n")
    rows = [("OBJECTS", "FIELD")]
    for rule in default_ignore_rules(domain):
        rows += [(_objects(rule), pattern) for pattern in rule.fields]
    out.write(render_table(rows))
    out.write("\nServer defaults (an added field passes only with this value):\n")
    drows = [("GROUP/KIND", "PATH", "ACCEPTED")]
    for row in doc["defaults"]:
        group = row["group"] or "core"
        where = POD_SPEC_LABEL if row["kind"] == POD_SPEC_LABEL else f"{group}/{row['kind']}"
        drows.append((where, row["path"], row["value"]))
    out.write(render_table(drows))
    return EXIT_OK

"""Printing verdicts for people (table) and programs (JSON)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from provider.core.verdict import Verdict


def summarize(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """Totals: how many objects, how many verified, failures by reason."""
    failed = Counter(v.reason.value for v in verdicts if not v.verified)
    return {
        "total": len(verdicts),
        "verified": sum(1 for v in verdicts if v.verified),
        "failed": sum(failed.values()),
        "failedByReason": dict(sorted(failed.items())),
    }


def _signers(verdict: Verdict) -> str:
    return ",".join(s.name for s in verdict.signers) or "-"


def _detail(verdict: Verdict) -> str:
    if verdict.diff:
        shown = [f"{d.op.value[0]}:{d.path}" for d in verdict.diff[:3]]
        more = len(verdict.diff) - len(shown)
        return " ".join(shown) + (f" (+{more})" if more > 0 else "")
    return verdict.message


def render_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def print_verdicts(verdicts: Sequence[Verdict], *, fmt: str, stream: TextIO) -> None:
    if fmt == "json":
        doc = {"summary": summarize(verdicts), "verdicts": [v.to_json() for v in verdicts]}
        stream.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
        return
    rows = [("OBJECT", "VERIFIED", "REASON", "SIGNERS", "DETAIL")]
    for v in verdicts:
        rows.append(
            (
                str(v.object) if v.object else "-",
                str(v.verified).lower(),
                v.reason.value,
                _signers(v),
                _detail(v),
            )
        )
    stream.write(render_table(rows))
    s = summarize(verdicts)
    by = ", ".join(f"{k}={n}" for k, n in s["failedByReason"].items())
    stream.write(
        f"\n{s['total']} object(s): {s['verified']} verified, {s['failed']} failed{(' (' + by + ')') if by else ''}\n"
    )

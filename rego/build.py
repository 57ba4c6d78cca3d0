"""Embed each template's Rego source into its ConstraintTemplate files.

``rego/<name>/src.rego`` is the one source. This script writes it into
``template.yaml`` (Gatekeeper 3.19+: ``code: [{engine: Rego, source:
{version: v1, rego: ...}}]``) and derives ``template-v0.yaml`` for older
Gatekeeper, whose legacy ``rego`` field is parsed as Rego v0: the same text
with the ``future.keywords`` imports that make v1 syntax valid v0.

Usage: ``python rego/build.py`` rewrites the files; ``--check`` only reports
(exit 1) templates whose embedded Rego differs from the source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

REGO_ROOT = Path(__file__).resolve().parent
TARGET = "admission.k8s.gatekeeper.sh"
# Keywords Rego v1 has built in; v0 needs them imported.
V0_IMPORTS = (
    "import future.keywords.contains",
    "import future.keywords.every",
    "import future.keywords.if",
    "import future.keywords.in",
)


def v0_source(source: str) -> str:
    """The v1 source with the keyword imports placed after the package line."""
    lines = source.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith("package "):
            block = "\n" + "".join(f"{imp}\n" for imp in V0_IMPORTS)
            return "".join([*lines[: index + 1], block, *lines[index + 1 :]])
    raise ValueError("the Rego source has no package line")


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(document: Any) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def render(template_dir: Path) -> dict[str, str]:
    """The expected text of each generated file of one template directory."""
    source = (template_dir / "src.rego").read_text(encoding="utf-8")
    template = yaml.safe_load((template_dir / "template.yaml").read_text(encoding="utf-8"))
    template["spec"]["targets"] = [
        {"target": TARGET, "code": [{"engine": "Rego", "source": {"version": "v1", "rego": source}}]}
    ]
    legacy = yaml.safe_load(dump(template))
    legacy["spec"]["targets"] = [{"target": TARGET, "rego": v0_source(source)}]
    return {"template.yaml": dump(template), "template-v0.yaml": dump(legacy)}


def template_dirs(root: Path = REGO_ROOT) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/src.rego"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for directory in template_dirs():
        for name, text in render(directory).items():
            path = directory / name
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current == text:
                continue
            stale.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "is stale" if args.check else "written"
        sys.stdout.write(f"{path.relative_to(REGO_ROOT.parent)} {verb}\n")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())

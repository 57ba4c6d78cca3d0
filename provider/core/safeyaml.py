"""Bounded YAML loading for untrusted signed messages.

YAML reaches this module only *after* a signature verified, yet a signer may
still be careless or hostile, so every parse is bounded:

* ``limits.max_documents`` documents per stream (empty ones count too, so a
  stream of bare ``---`` cannot run unbounded);
* ``limits.max_yaml_nodes`` nodes *after alias expansion* over the whole
  stream. libyaml shares one node object per anchor, so the expanded size is
  computed on the composed node graph with a memo keyed by node identity:
  a billion-laughs document costs as many steps as it has distinct nodes;
* ``limits.max_depth`` nesting levels (libyaml itself stops at 1000, which
  keeps its C recursion safe; the construction below is Python and recursive);
* no duplicate keys in a mapping (parsers disagree on which value wins);
* only the JSON-like core tags (``!!map``, ``!!seq``, ``!!str``, ``!!int``,
  ``!!float``, ``!!bool``, ``!!null``, ``!!timestamp``, ``!!binary``,
  ``!!merge``). Timestamps and binary scalars stay strings, as in the
  Kubernetes YAML-to-JSON conversion the API server applies.

The node graph is checked before any Python object is built.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import yaml

from provider.core.limits import Limits
from provider.errors import FormatError, LimitExceededError

log = logging.getLogger(__name__)

try:  # libyaml is ~10x faster; the pure-Python parser is the fallback
    _BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _BaseLoader = yaml.SafeLoader

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = frozenset(
    _CORE + name
    for name in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp", "binary", "merge")
)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader whose timestamps and binary scalars remain plain strings."""


_Loader.add_constructor(_CORE + "timestamp", _Loader.construct_yaml_str)
_Loader.add_constructor(_CORE + "binary", _Loader.construct_yaml_str)


def _check_node_graph(root: yaml.Node, *, budget: int, limits: Limits) -> int:
    """Return the expanded node count of ``root``; raise past the limits.

    ``budget`` is what is left of ``limits.max_yaml_nodes`` for this stream.
    Only collection nodes are memoised (an alias to a scalar costs one node);
    scalars are handled inline because they are most of a manifest.
    """
    memo: dict[int, int] = {}
    active: set[int] = set()
    allowed = _ALLOWED_TAGS
    scalar_type = yaml.ScalarNode
    mapping_type = yaml.MappingNode
    max_depth = limits.max_depth
    merge_tag = _CORE + "merge"

    def too_many() -> LimitExceededError:
        return LimitExceededError(
            f"YAML has more than limits.max_yaml_nodes={limits.max_yaml_nodes} nodes after alias expansion"
        )

    def bad_tag(node: yaml.Node) -> FormatError:
        return FormatError(f"YAML tag {node.tag!r} is not allowed in a manifest (expected core JSON types)")

    def walk(node: yaml.Node, depth: int) -> int:
        if depth > max_depth:
            raise LimitExceededError(f"YAML nesting depth exceeds limits.max_depth={max_depth}")
        key = id(node)
        known = memo.get(key)
        if known is not None:
            return known
        if key in active:
            raise FormatError("YAML alias refers to an enclosing node (recursive structure)")
        if node.tag not in allowed:
            raise bad_tag(node)
        active.add(key)
        total = 1
        if isinstance(node, mapping_type):
            pairs = node.value
            scalar_keys = [
                (k.tag, k.value) for k, _ in pairs if type(k) is scalar_type and k.tag != merge_tag
            ]
            if len(set(scalar_keys)) != len(scalar_keys):
                # libyaml keeps the last value, other parsers refuse or keep the
                # first: a signed manifest must not be read two ways.
                raise FormatError(f"YAML mapping has a duplicate key {_first_duplicate(scalar_keys)!r}")
            children = [part for pair in pairs for part in pair]
        else:
            children = node.value
        if children and depth + 1 > max_depth:
            raise LimitExceededError(f"YAML nesting depth exceeds limits.max_depth={max_depth}")
        for child in children:
            if type(child) is scalar_type:
                if child.tag not in allowed:
                    raise bad_tag(child)
                total += 1
                continue
            total += walk(child, depth + 1)
            if total > budget:
                raise too_many()
        if total > budget:
            raise too_many()
        active.discard(key)
        memo[key] = total
        return total

    if isinstance(root, scalar_type):
        if root.tag not in allowed:
            raise bad_tag(root)
        count = 1
    else:
        count = walk(root, 1)
    if count > budget:
        raise too_many()
    return count


def load_documents(data: bytes, *, limits: Limits) -> list[Any]:
    """Parse a (multi-document) YAML stream within ``limits``; skip empty documents.

    Raises :class:`LimitExceededError` for oversized streams and
    :class:`FormatError` for anything that is not well-formed YAML.
    """
    loader = _Loader(data)
    out: list[Any] = []
    used_nodes = 0
    documents = 0
    try:
        while loader.check_node():
            documents += 1
            if documents > limits.max_documents:
                raise LimitExceededError(
                    f"YAML stream has more than limits.max_documents={limits.max_documents} documents"
                )
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said there is one
                break
            used_nodes += _check_node_graph(node, budget=limits.max_yaml_nodes - used_nodes, limits=limits)
            value = loader.construct_document(node)
            if value is not None:
                out.append(value)
    except yaml.YAMLError as exc:
        raise FormatError(f"YAML is not well formed: {_short(exc)}") from exc
    except RecursionError as exc:  # pragma: no cover - depth is checked before construction
        raise LimitExceededError("YAML nesting too deep to construct") from exc
    finally:
        loader.dispose()
    return out


def check_value(value: Any, *, limits: Limits) -> None:
    """Apply the node and depth limits to a value that came from JSON."""
    count = 0
    # (value, depth); iterative so that a deep value cannot exhaust the stack.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limits.max_depth:
            raise LimitExceededError(f"value nesting depth exceeds limits.max_depth={limits.max_depth}")
        count += 1
        if count > limits.max_yaml_nodes:
            raise LimitExceededError(
                f"value has more than limits.max_yaml_nodes={limits.max_yaml_nodes} nodes"
            )
        if isinstance(item, Mapping):
            children: list[Any] = [part for pair in item.items() for part in pair]
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        # Shared sub-values count each time they occur (their expanded size);
        # a value containing itself ends at the depth limit.
        stack.extend((child, depth + 1) for child in children)


def _first_duplicate(keys: list[tuple[str, str]]) -> str:
    seen: set[tuple[str, str]] = set()
    for key in keys:
        if key in seen:
            return key[1][:80]
        seen.add(key)
    return ""  # pragma: no cover - only called when a duplicate exists


def _short(exc: yaml.YAMLError) -> str:
    text = " ".join(str(exc).split())
    return text[:200]

"""Ignore rules: which fields of a live object are not compared with what was signed.

The schema is k8s-manifest-sigstore's ``ignoreFields``::

    ignoreFields:
    - objects: [{group: apps, kind: Deployment, name: web, namespace: prod}]
      fields: [spec.replicas, metadata.labels.app.kubernetes.io/instance]

Matching differs from that tool in one deliberate way: a field pattern is
*anchored* at the root and matches whole path segments. ``status`` ignores
``status`` and everything below it, never ``spec.statusPolicy``. The rules:

* A pattern is text with ``.`` between segments. A path (a tuple of map keys
  and list indexes) is ignored when the pattern is consumed exactly by a
  prefix of the path's segments.
* A pattern segment ``*`` matches any one key or list index. Inside a segment
  ``*`` is a glob over that one key (``signature*`` matches ``signature`` and
  ``signature_1``); it never spans two path segments.
* Map keys may contain dots (``app.kubernetes.io/name``). The pattern text is
  consumed key by key: a key matches when it equals (or, with ``*``, globs)
  the pattern text up to a ``.`` or the end. Every way of splitting the text
  is tried, so no split is ever ambiguous or an error.

Object selectors: every field (``group``, ``kind``, ``name``, ``namespace``)
that is omitted or ``*`` matches anything; a value may use ``*`` globs and may
list alternatives separated by commas (``kind: ConfigMap,Secret``). An
explicit ``group: ""`` means the core group only. A rule without ``objects``
(or with an empty list) applies to every object.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from provider.core.annotations import DEFAULT_DOMAIN
from provider.core.verdict import ObjectRef
from provider.errors import ConfigError

log = logging.getLogger(__name__)

# Bounds on operator-supplied patterns, so a typo cannot cost unbounded time.
MAX_PATTERN_CHARS = 512
MAX_RULES = 1000
MAX_FIELDS_PER_RULE = 1000
MAX_OBJECTS_PER_RULE = 1000

_SELECTOR_KEYS = ("group", "kind", "name", "namespace")


def glob_match(glob: str, text: str) -> bool:
    """``*`` matches any run of characters (possibly empty); everything else is literal.

    Linear-time two-pointer matching (no regex backtracking): each star is
    revisited at most once per text position.
    """
    if "*" not in glob:
        return glob == text
    g = t = 0
    star = -1
    mark = 0
    while t < len(text):
        if g < len(glob) and glob[g] != "*" and glob[g] == text[t]:
            g += 1
            t += 1
        elif g < len(glob) and glob[g] == "*":
            star = g
            mark = t
            g += 1
        elif star >= 0:
            g = star + 1
            mark += 1
            t = mark
        else:
            return False
    while g < len(glob) and glob[g] == "*":
        g += 1
    return g == len(glob)


@dataclass(frozen=True, slots=True)
class ObjectSelector:
    """Which objects a rule applies to; ``*`` (the default) matches anything."""

    group: str = "*"
    kind: str = "*"
    name: str = "*"
    namespace: str = "*"

    def matches(self, ref: ObjectRef) -> bool:
        return (
            _value_matches(self.group, ref.group)
            and _value_matches(self.kind, ref.kind)
            and _value_matches(self.name, ref.name)
            and _value_matches(self.namespace, ref.namespace)
        )

    def to_json(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in _SELECTOR_KEYS if getattr(self, k) != "*"}


def _value_matches(spec: str, value: str) -> bool:
    if spec == "*":
        return True
    return any(glob_match(alt.strip(), value) for alt in spec.split(","))


@dataclass(frozen=True, slots=True)
class IgnoreRule:
    """Fields to ignore on the objects any selector matches (all objects if none)."""

    objects: tuple[ObjectSelector, ...]
    fields: tuple[str, ...]

    def applies_to(self, ref: ObjectRef) -> bool:
        return not self.objects or any(sel.matches(ref) for sel in self.objects)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fields": list(self.fields)}
        if self.objects:
            out["objects"] = [sel.to_json() for sel in self.objects]
        return out


def pattern_problem(pattern: Any) -> str | None:
    """Why ``pattern`` is not a valid field pattern, or None."""
    if not isinstance(pattern, str):
        return f"must be a string, got {type(pattern).__name__}"
    if not pattern:
        return "must not be empty"
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"is {len(pattern)} characters long, at most {MAX_PATTERN_CHARS} allowed"
    if pattern.startswith(".") or pattern.endswith(".") or ".." in pattern:
        return f"{pattern!r} has an empty path segment (leading, trailing or doubled '.')"
    if any(c.isspace() for c in pattern):
        return f"{pattern!r} contains whitespace"
    return None


def parse_ignore_fields(data: Any, *, where: str) -> tuple[IgnoreRule, ...]:
    """Parse an ``ignoreFields`` list; raise ConfigError naming every problem at once.

    ``None`` (the key absent) is an empty list.
    """
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError([f"{where} must be a list of {{objects, fields}}, got {type(data).__name__}"])
    problems: list[str] = []
    if len(data) > MAX_RULES:
        raise ConfigError([f"{where} has {len(data)} rules, at most {MAX_RULES} allowed"])
    rules: list[IgnoreRule] = []
    for i, item in enumerate(data):
        here = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{here} must be a mapping with 'fields' and optional 'objects'")
            continue
        unknown = sorted(str(k) for k in item if k not in ("objects", "fields"))
        if unknown:
            problems.append(f"{here} has unknown key(s) {', '.join(unknown)}; expected objects, fields")
        fields = _parse_fields(item.get("fields"), where=f"{here}.fields", problems=problems)
        objects = _parse_objects(item.get("objects"), where=f"{here}.objects", problems=problems)
        rules.append(IgnoreRule(objects=objects, fields=fields))
    if problems:
        raise ConfigError(problems)
    return tuple(rules)


def _parse_fields(data: Any, *, where: str, problems: list[str]) -> tuple[str, ...]:
    if not isinstance(data, list) or not data:
        problems.append(f"{where} must be a non-empty list of field patterns")
        return ()
    if len(data) > MAX_FIELDS_PER_RULE:
        problems.append(f"{where} has {len(data)} patterns, at most {MAX_FIELDS_PER_RULE} allowed")
        return ()
    out: list[str] = []
    for j, pattern in enumerate(data):
        problem = pattern_problem(pattern)
        if problem:
            problems.append(f"{where}[{j}] {problem}")
        else:
            out.append(pattern)
    return tuple(out)


def _parse_objects(data: Any, *, where: str, problems: list[str]) -> tuple[ObjectSelector, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        problems.append(f"{where} must be a list of {{group, kind, name, namespace}}")
        return ()
    if len(data) > MAX_OBJECTS_PER_RULE:
        problems.append(f"{where} has {len(data)} selectors, at most {MAX_OBJECTS_PER_RULE} allowed")
        return ()
    out: list[ObjectSelector] = []
    for j, sel in enumerate(data):
        here = f"{where}[{j}]"
        if not isinstance(sel, Mapping):
            problems.append(f"{here} must be a mapping of group, kind, name, namespace")
            continue
        unknown = sorted(str(k) for k in sel if k not in _SELECTOR_KEYS)
        if unknown:
            problems.append(
                f"{here} has unknown key(s) {', '.join(unknown)}; expected {', '.join(_SELECTOR_KEYS)}"
            )
        values: dict[str, str] = {}
        for key in _SELECTOR_KEYS:
            value = sel.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                problems.append(f"{here}.{key} must be a string, got {type(value).__name__}")
                continue
            if len(value) > MAX_PATTERN_CHARS:
                problems.append(f"{here}.{key} is longer than {MAX_PATTERN_CHARS} characters")
                continue
            if key != "group" and not value:
                problems.append(f"{here}.{key} must not be empty (omit it to match anything)")
                continue
            values[key] = value
        out.append(ObjectSelector(**values))
    return tuple(out)


def default_ignore_rules(domain: str = DEFAULT_DOMAIN) -> tuple[IgnoreRule, ...]:
    """The built-in rules, with signature annotations under ``domain``.

    Only fields the server or the signing process writes on its own, whose
    values no signer can know, are ignored. Server-*defaulted* spec fields are
    not here: they are accepted only at their Kubernetes default value (see
    :mod:`provider.core.k8sdefaults`), so a changed value still shows.
    """
    every = ()
    annotations = "metadata.annotations."
    return (
        IgnoreRule(
            objects=every,
            fields=(
                # Bookkeeping the API server writes on every object.
                "metadata.managedFields",
                "metadata.resourceVersion",
                "metadata.uid",
                "metadata.generation",
                "metadata.creationTimestamp",
                "metadata.selfLink",
                # An object being deleted is still what was signed; denying
                # updates to it (finalizer removal) would block its deletion.
                "metadata.deletionTimestamp",
                "metadata.deletionGracePeriodSeconds",
                annotations + "kubectl.kubernetes.io/last-applied-configuration",
                # Controllers own status; it is never part of the desired state.
                "status",
            ),
        ),
        IgnoreRule(
            objects=every,
            fields=(
                # The signature material itself cannot be inside what it signs.
                f"{annotations}{domain}/message",
                f"{annotations}{domain}/signature*",
                f"{annotations}{domain}/certificate*",
                f"{annotations}{domain}/bundle*",
                f"{annotations}{domain}/resourceBundleRef",
            ),
        ),
        IgnoreRule(
            objects=(ObjectSelector(group="apps", kind="Deployment"),),
            fields=(annotations + "deployment.kubernetes.io/revision",),
        ),
        IgnoreRule(
            objects=(ObjectSelector(group="apps", kind="DaemonSet"),),
            fields=(annotations + "deprecated.daemonset.template.generation",),
        ),
        IgnoreRule(
            # Token secrets the (pre-1.24) token controller links to its account.
            objects=(ObjectSelector(group="", kind="ServiceAccount"),),
            fields=("secrets",),
        ),
    )


DEFAULT_IGNORE_RULES: tuple[IgnoreRule, ...] = default_ignore_rules(DEFAULT_DOMAIN)


def effective_rules(
    configured: Iterable[IgnoreRule], *, builtin: bool = True, domain: str = DEFAULT_DOMAIN
) -> tuple[IgnoreRule, ...]:
    """The rules in force: the built-ins for ``domain`` (unless turned off), then the configured ones."""
    if not builtin:
        log.warning("built-in ignore rules are off: server bookkeeping fields will be compared")
    return (default_ignore_rules(domain) if builtin else ()) + tuple(configured)


def patterns_for(rules: Iterable[IgnoreRule], ref: ObjectRef) -> tuple[str, ...]:
    """The field patterns in effect for ``ref``, de-duplicated, in rule order."""
    seen: dict[str, None] = {}
    for rule in rules:
        if rule.applies_to(ref):
            for pattern in rule.fields:
                seen.setdefault(pattern, None)
    return tuple(seen)


# -- matching ------------------------------------------------------------------

# A matching state: (pattern index, offset into the pattern text where the next
# segment starts). ``_DONE`` as an offset means the pattern was fully consumed.
_DONE = -1
State = tuple[tuple[int, int], ...]


@lru_cache(maxsize=4096)
def _boundaries(pattern: str) -> tuple[int, ...]:
    """Offsets where a segment may end: every '.' and the end of the text."""
    return (*(i for i, c in enumerate(pattern) if c == "."), len(pattern))


def _advance(pattern: str, start: int, key: str) -> list[int]:
    """Offsets after consuming ``key`` at ``start`` (``_DONE`` if the pattern ends)."""
    out: list[int] = []
    for end in _boundaries(pattern):
        if end <= start:
            continue
        segment = pattern[start:end]
        if "*" not in segment and len(segment) > len(key):
            break  # longer literal prefixes cannot equal the key either
        if glob_match(segment, key):
            out.append(_DONE if end == len(pattern) else end + 1)
    return out


_MAX_MEMO_STEPS = 20_000


@lru_cache(maxsize=256)
def matcher_for(patterns: tuple[str, ...]) -> PathMatcher:
    """A shared matcher for a pattern set, so its memoised transitions are reused."""
    return PathMatcher(patterns)


class PathMatcher:
    """Anchored, segment-wise matching of paths against field patterns.

    Used incrementally by a tree walk: ``start()`` then ``step(state, key)`` per
    path segment, so each node costs O(live states), never a rescan of the path.
    """

    __slots__ = ("_patterns", "_steps")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = tuple(patterns)
        # Transitions are pure functions of (state, key); the same keys recur
        # across objects (metadata, spec, containers...), so they are memoised.
        # Bounded: past the limit new transitions are computed, not stored.
        self._steps: dict[tuple[State, str], tuple[State, bool]] = {}

    @property
    def patterns(self) -> tuple[str, ...]:
        return self._patterns

    def start(self) -> State:
        return tuple((i, 0) for i in range(len(self._patterns)))

    def step(self, state: State, key: str | int) -> tuple[State, bool]:
        """Advance by one path segment: the new state and whether the path is now ignored."""
        if not state:
            return state, False
        text = str(key)
        memo_key = (state, text)
        known = self._steps.get(memo_key)
        if known is not None:
            return known
        result = self._step(state, text)
        if len(self._steps) < _MAX_MEMO_STEPS:
            self._steps[memo_key] = result
        return result

    def _step(self, state: State, text: str) -> tuple[State, bool]:
        nxt: list[tuple[int, int]] = []
        for index, offset in state:
            for after in _advance(self._patterns[index], offset, text):
                if after == _DONE:
                    return (), True
                nxt.append((index, after))
        return tuple(dict.fromkeys(nxt)), False

    def matches(self, path: Sequence[str | int]) -> bool:
        """Whether ``path`` (or an ancestor of it) is ignored."""
        state = self.start()
        for key in path:
            state, ignored = self.step(state, key)
            if ignored:
                return True
            if not state:
                return False
        return False

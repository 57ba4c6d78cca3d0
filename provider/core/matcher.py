"""Is a live Kubernetes object what was signed? And if not, exactly where not.

Two steps, both pure:

1. *Find* the signed manifest for the object. Identity is (API group, kind,
   name, namespace); the version in ``apiVersion`` is not part of the
   identity and is compared afterwards like any other field. A manifest
   without ``metadata.namespace`` matches the object in any namespace
   (``namespace_bound`` False); one with a namespace must name the object's.
   Among several candidates the most specific wins: namespaced before
   namespace-less, then the same ``apiVersion`` before another version, then
   the first in bundle order.
2. *Compare* it with the object. The walk visits both trees in a fixed order
   (mapping keys sorted, list items by index) and reports a difference where
   a field is neither ignored (:mod:`provider.core.ignore`) nor an added field
   at its Kubernetes default (:mod:`provider.core.k8sdefaults`).

Equivalences the API server introduces are folded in before comparing: a
``null`` field equals an absent one; resource quantities compare by value
(``0.5`` == ``500m``); a Secret's signed ``stringData`` is compared as the
base64 ``data`` the server stores. Nothing else is normalised: ``80`` and
``"80"`` differ (an int-or-string ``targetPort`` means different things).

Secret ``data``/``stringData`` values (and a Secret's last-applied annotation,
which repeats them) are never shown in a diff: they read ``<redacted>``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from provider.core.ignore import IgnoreRule, PathMatcher, State, matcher_for, patterns_for
from provider.core.k8sdefaults import Context, DefaultsTable, same_value, table_for
from provider.core.limits import Limits
from provider.core.quantity import same_quantity
from provider.core.verdict import DiffEntry, DiffOp, ObjectRef
from provider.errors import InputError, LimitExceededError

log = logging.getLogger(__name__)

REDACTED = "<redacted>"
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_ABSENT: Any = object()


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The manifest matched for an object (None: not in the bundle) and how they differ."""

    manifest: Mapping[str, Any] | None
    diff: tuple[DiffEntry, ...]
    omitted: int
    namespace_bound: bool | None
    ignored_fields: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return self.manifest is not None and not self.diff and not self.omitted


def object_ref(obj: Mapping[str, Any], *, namespace: str | None = None) -> ObjectRef:
    """The identity of ``obj``; ``namespace`` fills in a missing ``metadata.namespace``.

    Raises InputError when ``obj`` cannot be a Kubernetes object at all.
    """
    if not isinstance(obj, Mapping):
        raise InputError(f"a Kubernetes object must be a mapping, got {type(obj).__name__}")
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    if not isinstance(api_version, str) or not api_version:
        raise InputError("the object has no apiVersion string")
    if not isinstance(kind, str) or not kind:
        raise InputError("the object has no kind string")
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise InputError(f"the object's metadata must be a mapping, got {type(metadata).__name__}")
    name = metadata.get("name")
    if name is None:
        name = ""
    own_ns = metadata.get("namespace")
    if not isinstance(name, str) or not (own_ns is None or isinstance(own_ns, str)):
        raise InputError("the object's metadata.name and metadata.namespace must be strings")
    if namespace is not None and not isinstance(namespace, str):
        raise InputError("the request namespace must be a string")
    return ObjectRef(api_version=api_version, kind=kind, name=name, namespace=own_ns or namespace or "")


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


@dataclass(frozen=True, slots=True)
class _Candidate:
    manifest: Mapping[str, Any]
    bound: bool
    rank: tuple[int, int, int]


def _candidate(manifest: Any, ref: ObjectRef, index: int) -> _Candidate | None:
    """``manifest`` as a candidate for ``ref``, or None if it names another object."""
    if not isinstance(manifest, Mapping):
        return None
    api_version = manifest.get("apiVersion")
    metadata = manifest.get("metadata")
    if not isinstance(api_version, str) or not isinstance(metadata, Mapping):
        return None
    if manifest.get("kind") != ref.kind or _group(api_version) != ref.group:
        return None
    name = metadata.get("name")
    if not isinstance(name, str) or not name or name != ref.name:
        return None
    ns = metadata.get("namespace")
    if ns is not None and not isinstance(ns, str):
        return None
    bound = bool(ns)
    if bound and ns != ref.namespace:
        return None
    return _Candidate(manifest, bound, (0 if bound else 1, 0 if api_version == ref.api_version else 1, index))


def find_manifest(manifests: Iterable[Any], ref: ObjectRef) -> tuple[Mapping[str, Any], bool] | None:
    """The most specific signed manifest for ``ref`` and whether it names the namespace."""
    best: _Candidate | None = None
    for index, manifest in enumerate(manifests):
        cand = _candidate(manifest, ref, index)
        if cand is not None and (best is None or cand.rank < best.rank):
            best = cand
    return None if best is None else (best.manifest, best.bound)


def match_object(
    obj: Mapping[str, Any],
    manifests: Sequence[Mapping[str, Any]],
    *,
    rules: Sequence[IgnoreRule],
    namespace: str | None = None,
    limits: Limits,
) -> MatchResult:
    """Find the signed manifest for ``obj`` and report how the object differs from it.

    Raises InputError when ``obj`` is not a Kubernetes object, LimitExceededError
    when it (or the manifest) nests deeper than ``limits.max_depth``.
    """
    ref = object_ref(obj, namespace=namespace)
    patterns = patterns_for(rules, ref)
    found = find_manifest(manifests, ref)
    if found is None:
        return MatchResult(None, (), 0, None, patterns)
    manifest, bound = found
    diff, omitted = diff_objects(manifest, obj, ref=ref, patterns=patterns, limits=limits)
    return MatchResult(manifest, diff, omitted, bound, patterns)


def diff_objects(
    signed: Mapping[str, Any],
    live: Mapping[str, Any],
    *,
    ref: ObjectRef,
    patterns: Sequence[str],
    limits: Limits,
) -> tuple[tuple[DiffEntry, ...], int]:
    """Differences between ``signed`` and ``live`` (first ``limits.max_diff_entries``) and how many more."""
    is_secret = ref.group == "" and ref.kind == "Secret"
    norm_signed = _normalise_signed(signed, ref=ref)
    walker = _Walker(
        matcher=matcher_for(tuple(patterns)),
        table=table_for(ref.group, ref.kind),
        signed_root=norm_signed,
        live_root=live,
        is_secret=is_secret,
        limits=limits,
    )
    try:
        walker.compare(norm_signed, live, (), walker.matcher.start(), 0)
    except RecursionError as exc:
        raise LimitExceededError(f"objects nest too deeply to compare (limit {limits.max_depth})") from exc
    return tuple(walker.entries), walker.count - len(walker.entries)


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _identical(signed: Any, live: Any) -> bool:
    """Whether two containers are the same JSON value, decided in C.

    Python's ``==`` runs first because it rejects most differing values at the
    first difference, but it calls ``True == 1`` and ``1 == 1.0`` equal, which
    the walk does not; so an equal pair is confirmed on canonical JSON bytes,
    which keep booleans, integers and floats apart. A false "not identical"
    only costs the full walk, which decides as always.
    """
    if not isinstance(signed, dict | list) or type(signed) is not type(live):
        return False
    try:
        if signed != live:
            return False
        return orjson.dumps(signed, option=_CANONICAL) == orjson.dumps(live, option=_CANONICAL)
    except (TypeError, RecursionError, orjson.JSONEncodeError):
        return False


def _json_key(key: Any) -> str:
    """Mapping keys as the YAML-to-JSON conversion kubectl performs spells them."""
    if isinstance(key, str):
        return key
    if key is True or key is False:
        return str(key).lower()
    if key is None:
        return "null"
    return str(key)


def _canonical_base64(value: Any) -> Any:
    """Byte fields come back as canonical base64: the server's decoder skips line breaks."""
    if not isinstance(value, str):
        return value
    compact = value.replace("\r", "").replace("\n", "")
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return value  # not base64: the server would reject it; compare as written
    return base64.b64encode(raw).decode("ascii")


def _normalise_signed(signed: Mapping[str, Any], *, ref: ObjectRef) -> Mapping[str, Any]:
    """Fold representation changes the API server makes into the signed side."""
    out: dict[str, Any] = {_json_key(k): v for k, v in signed.items()}
    is_secret = ref.group == "" and ref.kind == "Secret"
    bytes_field = (
        "data" if is_secret else "binaryData" if ref.group == "" and ref.kind == "ConfigMap" else None
    )
    if bytes_field and isinstance(out.get(bytes_field), Mapping):
        out[bytes_field] = {_json_key(k): _canonical_base64(v) for k, v in out[bytes_field].items()}
    if is_secret and isinstance(out.get("stringData"), Mapping):
        # The server merges stringData into data (stringData wins) and never returns it.
        data = out.get("data")
        merged: dict[str, Any] = dict(data) if isinstance(data, Mapping) else {}
        for key, value in out["stringData"].items():
            if isinstance(value, str):
                merged[_json_key(key)] = base64.b64encode(value.encode("utf-8")).decode("ascii")
            else:
                merged[_json_key(key)] = value  # not a string: the server would reject it; keep it visible
        out["data"] = merged
        del out["stringData"]
    return out


class _Walker:
    """One comparison: walks both trees once, collecting bounded, ordered diff entries."""

    def __init__(
        self,
        *,
        matcher: PathMatcher,
        table: DefaultsTable,
        signed_root: Mapping[str, Any],
        live_root: Mapping[str, Any],
        is_secret: bool,
        limits: Limits,
    ) -> None:
        self.matcher = matcher
        self.table = table
        self.signed_root = signed_root
        self.live_root = live_root
        self.is_secret = is_secret
        self.limits = limits
        self.entries: list[DiffEntry] = []
        self.count = 0

    # -- the walk -------------------------------------------------------------

    def _depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise LimitExceededError(f"objects nest deeper than {self.limits.max_depth} levels")

    def compare(self, signed: Any, live: Any, path: tuple[str | int, ...], state: State, depth: int) -> None:
        self._depth(depth)
        if _identical(signed, live):
            return  # nothing below can differ: skip the per-field walk
        if isinstance(signed, Mapping) and isinstance(live, Mapping):
            self._compare_mappings(signed, live, path, state, depth)
        elif isinstance(signed, list) and isinstance(live, list):
            for i in range(max(len(signed), len(live))):
                child_state, ignored = self.matcher.step(state, i)
                if ignored:
                    continue
                child = (*path, i)
                if i >= len(live):
                    self.removed(signed[i], child, child_state, depth + 1)
                elif i >= len(signed):
                    self.added(live[i], child, child_state, depth + 1)
                else:
                    self.compare(signed[i], live[i], child, child_state, depth + 1)
        elif not self._equal(signed, live, path):
            self.report(DiffOp.CHANGED, path, signed, live)

    def _compare_mappings(
        self,
        signed: Mapping[Any, Any],
        live: Mapping[Any, Any],
        path: tuple[str | int, ...],
        state: State,
        depth: int,
    ) -> None:
        s_map = {_json_key(k): v for k, v in signed.items()}
        l_map = {_json_key(k): v for k, v in live.items()}
        for key in sorted(s_map.keys() | l_map.keys()):
            child = (*path, key)
            if child == ("metadata", "namespace"):
                continue  # identity, already decided by find_manifest (namespace binding)
            child_state, ignored = self.matcher.step(state, key)
            if ignored:
                continue
            s = s_map.get(key)
            v = l_map.get(key)
            # A null field is an absent field: the server drops it.
            if s is None and v is None:
                continue
            if s is None:
                self.added(v, child, child_state, depth + 1)
            elif v is None:
                self.removed(s, child, child_state, depth + 1)
            else:
                self.compare(s, v, child, child_state, depth + 1)

    def _equal(self, signed: Any, live: Any, path: tuple[str | int, ...]) -> bool:
        if same_value(signed, live):
            return True
        return self.table.is_quantity(path) and same_quantity(signed, live)

    def added(self, value: Any, path: tuple[str | int, ...], state: State, depth: int) -> None:
        if self._covered(value, path, state, depth, defaults=True):
            return
        if isinstance(value, Mapping | list) and value and self._may_appear(path):
            # The container itself is an expected server addition (tolerations,
            # labels): name the entries inside it that are not, one by one.
            for key, child in _sorted_items(value):
                child_state, ignored = self.matcher.step(state, key)
                if not ignored and child is not None:
                    self.added(child, (*path, key), child_state, depth + 1)
            return
        self.report(DiffOp.ADDED, path, None, value)

    def _may_appear(self, path: tuple[str | int, ...]) -> bool:
        return any(entry.container for entry in self.table.defaults_at(path))

    def removed(self, value: Any, path: tuple[str | int, ...], state: State, depth: int) -> None:
        if (
            isinstance(value, Mapping | list)
            and not value
            and (self.table.kind is not None or path[0] == "metadata")
        ):
            # Typed fields drop empty maps and lists (``annotations: {}``, ``env: []``).
            # Custom resources keep them as written, and there ``{}`` can mean "on".
            return
        if not self._covered(value, path, state, depth, defaults=False):
            self.report(DiffOp.REMOVED, path, value, None)

    def _covered(
        self, value: Any, path: tuple[str | int, ...], state: State, depth: int, *, defaults: bool
    ) -> bool:
        """Whether a one-sided ``value`` at ``path`` explains itself.

        It does when a default accepts it, or when it is a non-empty container
        whose every entry is ignored, null, or (only where the table lets the
        container itself appear) a default in turn. An empty container added
        where the table knows none is a difference.
        """
        self._depth(depth)
        if value is None:
            return True
        appears = False
        if defaults:
            ctx = Context(self.live_root, self.signed_root, path)
            for entry in self.table.defaults_at(path):
                if entry.container:
                    appears = True
                elif entry.accepts(value, ctx):
                    return True
        items: Iterable[tuple[str | int, Any]]
        if isinstance(value, Mapping) and value:
            items = ((_json_key(k), v) for k, v in value.items())
        elif isinstance(value, list) and value:
            items = enumerate(value)
        else:
            return False
        for key, child in items:
            child_state, ignored = self.matcher.step(state, key)
            if ignored or (child is None and isinstance(value, Mapping)):
                continue
            if not self._covered(child, (*path, key), child_state, depth + 1, defaults=appears):
                return False
        return True

    # -- reporting ------------------------------------------------------------

    def report(self, op: DiffOp, path: tuple[str | int, ...], signed: Any, actual: Any) -> None:
        self.count += 1
        if len(self.entries) >= self.limits.max_diff_entries:
            return
        redact = self._is_redacted(path)
        self.entries.append(
            DiffEntry(
                path=".".join(str(seg) for seg in path),
                op=op,
                signed=None if signed is None else self._render(signed, redact),
                actual=None if actual is None else self._render(actual, redact),
            )
        )

    def _is_redacted(self, path: tuple[str | int, ...]) -> bool:
        if not self.is_secret or not path:
            return False
        return path[0] in ("data", "stringData") or path[:3] == ("metadata", "annotations", _LAST_APPLIED)

    def _render(self, value: Any, redact: bool) -> Any:
        limit = self.limits.max_diff_value_chars
        if redact:
            return REDACTED
        if isinstance(value, Mapping | list):
            # A Secret's containers may hold its data: summarise, never show.
            if not self.is_secret:
                shown = _compact(value, limit)
                if shown is not None:
                    return shown
            n = len(value)
            if isinstance(value, list):
                return f"[...{n} item{'s' if n != 1 else ''}]"
            return f"{{...{n} key{'s' if n != 1 else ''}}}"
        if isinstance(value, int | float):  # bool is an int
            return value
        text = value if isinstance(value, str) else str(value)
        if len(text) > limit:
            return text[: max(limit - 3, 0)] + "..."
        return text


def _sorted_items(value: Mapping[Any, Any] | list[Any]) -> list[tuple[str | int, Any]]:
    if isinstance(value, list):
        return list(enumerate(value))
    return sorted(((_json_key(k), v) for k, v in value.items()), key=lambda kv: kv[0])


def _compact(value: Any, limit: int) -> Any:
    """A small container as plain JSON when its compact text fits ``limit``, else None."""
    if len(value) > 8:
        return None
    try:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(text) > limit:
        return None
    parsed: Any = json.loads(text)
    return parsed

"""Gatekeeper's external-data wire format, and the key envelope inside it.

This is the only module that knows Gatekeeper's JSON field names. A request
carries ``request.keys``, a list of strings; the answer carries one item per
distinct key (``key``, ``value``, ``error``), or a ``systemError`` and no items
when the answer could not be computed. Gatekeeper caches items per key, so
nothing transient may ever appear as an item.

Each key is the JSON text of an *envelope* (``docs/protocol.md``)::

    {"object": {...}, "namespace": "ns", "ignoreFields": [...], "schema": 1}

Everything a verdict depends on travels inside the key, because the key is
what Gatekeeper caches on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from provider.core.ignore import IgnoreRule, parse_ignore_fields
from provider.core.limits import Limits
from provider.core.safeyaml import check_value
from provider.errors import ConfigError, FormatError, InputError

API_VERSION = "externaldata.gatekeeper.sh/v1beta1"
REQUEST_KIND = "ProviderRequest"
RESPONSE_KIND = "ProviderResponse"
JSON_MEDIA_TYPE = "application/json"

# The envelope versions this provider understands; absent means 1.
ENVELOPE_SCHEMA = 1
_ENVELOPE_FIELDS = frozenset({"object", "namespace", "ignoreFields", "schema"})
# A Kubernetes namespace name is a DNS label.
MAX_NAMESPACE_CHARS = 63


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """One decoded key: the object under review and what else its verdict depends on."""

    object: dict[str, Any]
    namespace: str | None = None
    extra_rules: tuple[IgnoreRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Item:
    """One answered key: ``value`` is serialized verdict JSON, or ``error`` says why not."""

    key: str
    value: bytes | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole response: items, or a system error and no items."""

    items: tuple[Item, ...] = ()
    system_error: str = ""

    @classmethod
    def failure(cls, message: str) -> Answer:
        return cls(items=(), system_error=message or "internal error")

    def to_bytes(self) -> bytes:
        return encode_answer(self)


# -- requests ---------------------------------------------------------------------


def parse_request(body: bytes, *, max_keys: int) -> list[str]:
    """The keys of a ProviderRequest; InputError when the body is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"request body is not valid JSON ({_short(str(exc))})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"request body must be a JSON object, got {_json_type(doc)}")
    api_version = doc.get("apiVersion")
    kind = doc.get("kind")
    if api_version != API_VERSION:
        raise InputError(f"apiVersion must be {API_VERSION!r}, got {_short(repr(api_version))}")
    if kind != REQUEST_KIND:
        raise InputError(f"kind must be {REQUEST_KIND!r}, got {_short(repr(kind))}")
    request = doc.get("request")
    if not isinstance(request, dict):
        raise InputError(f"request must be a JSON object, got {_json_type(request)}")
    # Gatekeeper's Go struct marshals an empty key list with omitempty: no field.
    keys = request.get("keys", [])
    if keys is None:
        keys = []
    if not isinstance(keys, list):
        raise InputError(f"request.keys must be a list of strings, got {_json_type(keys)}")
    if len(keys) > max_keys:
        raise InputError(f"request.keys holds {len(keys)} keys, more than the {max_keys} allowed per request")
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise InputError(f"request.keys[{i}] must be a string, got {_json_type(key)}")
    return keys


def encode_request(keys: Sequence[str]) -> bytes:
    """A ProviderRequest body as Gatekeeper sends it (for clients and tests)."""
    return orjson.dumps({"apiVersion": API_VERSION, "kind": REQUEST_KIND, "request": {"keys": list(keys)}})


# -- keys ---------------------------------------------------------------------------


def encode_key(obj: Any, *, namespace: str | None = None, ignore_fields: Sequence[Any] | None = None) -> str:
    """The key text for ``obj`` (what the Rego side builds with ``json.marshal``)."""
    envelope: dict[str, Any] = {"object": obj}
    if namespace:
        envelope["namespace"] = namespace
    if ignore_fields:
        envelope["ignoreFields"] = list(ignore_fields)
    return orjson.dumps(envelope).decode("utf-8")


def parse_key(data: bytes, *, limits: Limits) -> KeyRequest:
    """Decode one key envelope; InputError names the first thing that is wrong.

    The size bound (``server.maxKeyBytes``) is applied by the caller before
    the bytes are parsed at all.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"key is not valid JSON ({_short(str(exc))})") from exc
    if not isinstance(doc, dict):
        raise InputError(f"key must be a JSON object with an 'object' field, got {_json_type(doc)}")
    unknown = sorted(set(doc) - _ENVELOPE_FIELDS)
    if unknown:
        names = ", ".join(repr(_short(u, 40)) for u in unknown[:5])
        raise InputError(
            f"key has unknown field(s) {names}; expected object, namespace, ignoreFields, schema"
        )
    schema = doc.get("schema", ENVELOPE_SCHEMA)
    if schema != ENVELOPE_SCHEMA or isinstance(schema, bool):
        raise InputError(f"key schema must be {ENVELOPE_SCHEMA}, got {_short(repr(schema))}")
    try:
        check_value(doc, limits=limits)
    except FormatError as exc:
        raise InputError(f"key: {exc.diagnostics()}") from exc
    obj = doc.get("object")
    if not isinstance(obj, dict):
        raise InputError(f"key field 'object' must be a JSON object, got {_json_type(obj)}")
    namespace = doc.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            raise InputError(f"key field 'namespace' must be a string, got {_json_type(namespace)}")
        if len(namespace) > MAX_NAMESPACE_CHARS:
            raise InputError(f"key field 'namespace' is longer than {MAX_NAMESPACE_CHARS} characters")
        namespace = namespace or None
    rules: tuple[IgnoreRule, ...] = ()
    raw_rules = doc.get("ignoreFields")
    if raw_rules is not None:
        if not isinstance(raw_rules, list):
            raise InputError(f"key field 'ignoreFields' must be a list, got {_json_type(raw_rules)}")
        try:
            rules = parse_ignore_fields(raw_rules, where="ignoreFields")
        except ConfigError as exc:
            raise InputError("key " + "; ".join(exc.problems[:3])) from exc
    return KeyRequest(object=obj, namespace=namespace, extra_rules=rules)


# -- answers ------------------------------------------------------------------------

_HEAD = (
    b'{"apiVersion":"' + API_VERSION.encode() + b'","kind":"' + RESPONSE_KIND.encode() + b'",'
    b'"response":{"idempotent":true,"items":['
)


def encode_answer(answer: Answer) -> bytes:
    """The ProviderResponse body.

    Verdict values arrive already serialized (cached bytes), so the response
    is spliced together instead of re-serialising every verdict.
    """
    parts = [_HEAD]
    dumps = orjson.dumps
    for i, item in enumerate(answer.items):
        if i:
            parts.append(b",")
        parts.append(b'{"key":')
        parts.append(dumps(item.key))
        parts.append(b',"value":')
        parts.append(item.value if item.value is not None else b"null")
        parts.append(b',"error":')
        parts.append(dumps(item.error))
        parts.append(b"}")
    parts.append(b'],"systemError":')
    parts.append(dumps(answer.system_error))
    parts.append(b"}}")
    return b"".join(parts)


def system_error(message: str) -> bytes:
    """A ProviderResponse with no items and ``message`` as its systemError."""
    return encode_answer(Answer.failure(message))


# -- helpers ------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

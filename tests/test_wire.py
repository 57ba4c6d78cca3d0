"""Gatekeeper's envelope and the key envelope: strict parsing, exact encoding."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from provider import wire
from provider.core.limits import Limits
from provider.errors import InputError

CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cm", "namespace": "ns"},
    "data": {"a": "b"},
}


def request(keys: Any, **override: Any) -> bytes:
    doc: dict[str, Any] = {
        "apiVersion": wire.API_VERSION,
        "kind": wire.REQUEST_KIND,
        "request": {"keys": keys},
    }
    doc.update(override)
    return orjson.dumps(doc)


def test_request_as_gatekeeper_sends_it() -> None:
    # Gatekeeper's Go client marshals the struct in field order, no spaces.
    body = (
        b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest",'
        b'"request":{"keys":["{\\"object\\":{}}","b"]}}'
    )
    assert wire.parse_request(body, max_keys=10) == ['{"object":{}}', "b"]
    assert wire.encode_request(['{"object":{}}', "b"]) == body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "must be a JSON object, got array"),
        (b"null", "must be a JSON object, got null"),
        (request([], apiVersion="v1"), "apiVersion must be"),
        (request([], apiVersion=None), "apiVersion must be"),
        (request([], kind="ProviderResponse"), "kind must be"),
        (request([], request=None), "request must be a JSON object, got null"),
        (request([], request=[]), "request must be a JSON object, got array"),
        (request([], request={"keys": {}}), "request.keys must be a list of strings, got object"),
        (request("abc"), "request.keys must be a list of strings, got string"),
        (request(["a", 1]), "request.keys[1] must be a string, got number"),
        (request(["a", None]), "request.keys[1] must be a string, got null"),
        (request([{"object": {}}]), "request.keys[0] must be a string, got object"),
        (request(["k"] * 11), "holds 11 keys, more than the 10 allowed"),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, "not valid JSON"),
    ],
)
def test_malformed_requests(body: bytes, expected: str) -> None:
    with pytest.raises(InputError) as exc:
        wire.parse_request(body, max_keys=10)
    assert expected in exc.value.diagnostics()


def test_empty_key_list_as_go_marshals_it() -> None:
    # Request.Keys is `json:"keys,omitempty"` in Gatekeeper: an empty list is no field at all.
    body = b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderRequest","request":{}}'
    assert wire.parse_request(body, max_keys=10) == []
    assert wire.parse_request(request(None), max_keys=10) == []


def test_unknown_gatekeeper_fields_are_tolerated() -> None:
    # Gatekeeper owns that envelope; a field it adds later must not break every admission.
    body = request(["k"], extra=1)
    assert wire.parse_request(body, max_keys=1) == ["k"]


def test_key_round_trip() -> None:
    key = wire.encode_key(CM, namespace="ns", ignore_fields=[{"fields": ["data.a"]}])
    parsed = wire.parse_key(key.encode(), limits=Limits())
    assert parsed.object == CM
    assert parsed.namespace == "ns"
    assert len(parsed.extra_rules) == 1 and parsed.extra_rules[0].fields == ("data.a",)
    bare = wire.parse_key(wire.encode_key(CM).encode(), limits=Limits())
    assert (bare.namespace, bare.extra_rules) == (None, ())
    assert wire.parse_key(b'{"object":{},"namespace":"","schema":1}', limits=Limits()).namespace is None


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"", "key is not valid JSON"),
        (b"ConfigMap/ns/cm", "key is not valid JSON"),
        (b"[]", "key must be a JSON object"),
        (b'"text"', "key must be a JSON object"),
        (b"{}", "key field 'object' must be a JSON object, got null"),
        (b'{"object": []}', "key field 'object' must be a JSON object, got array"),
        (b'{"object": "x"}', "got string"),
        (b'{"object": {}, "namespace": 3}', "key field 'namespace' must be a string, got number"),
        (b'{"object": {}, "namespace": "' + b"n" * 64 + b'"}', "longer than 63"),
        (b'{"object": {}, "ignoreFields": {}}', "key field 'ignoreFields' must be a list, got object"),
        (b'{"object": {}, "ignoreFields": [{"fields": 3}]}', "key ignoreFields[0].fields"),
        (b'{"object": {}, "schema": 2}', "key schema must be 1, got 2"),
        (b'{"object": {}, "schema": true}', "key schema must be 1"),
        (b'{"object": {}, "review": {}}', "unknown field(s) 'review'"),
        (b'{"object": {}, "Object": {}}', "unknown field(s) 'Object'"),
        (b'{"object": ' + b'{"a": ' * 100 + b"1" + b"}" * 101, "depth"),
    ],
)
def test_malformed_keys(key: bytes, expected: str) -> None:
    with pytest.raises(InputError) as exc:
        wire.parse_key(key, limits=Limits())
    assert expected in exc.value.diagnostics()


def test_key_node_limit() -> None:
    key = orjson.dumps({"object": {"data": {f"k{i}": "v" for i in range(50)}}})
    wire.parse_key(key, limits=Limits())
    with pytest.raises(InputError, match="nodes"):
        wire.parse_key(key, limits=Limits(max_yaml_nodes=40))


def test_answer_encoding_is_exact() -> None:
    answer = wire.Answer(
        items=(
            wire.Item("k1", b'{"schema":1,"verified":true}'),
            wire.Item('k"2', None, "key is not valid JSON"),
        )
    )
    assert answer.to_bytes() == (
        b'{"apiVersion":"externaldata.gatekeeper.sh/v1beta1","kind":"ProviderResponse",'
        b'"response":{"idempotent":true,"items":['
        b'{"key":"k1","value":{"schema":1,"verified":true},"error":""},'
        b'{"key":"k\\"2","value":null,"error":"key is not valid JSON"}'
        b'],"systemError":""}}'
    )
    doc = orjson.loads(answer.to_bytes())
    assert doc["response"]["items"][1]["key"] == 'k"2'


def test_system_error_has_no_items() -> None:
    doc = orjson.loads(wire.system_error('registry "r" unreachable'))
    assert doc == {
        "apiVersion": wire.API_VERSION,
        "kind": wire.RESPONSE_KIND,
        "response": {"idempotent": True, "items": [], "systemError": 'registry "r" unreachable'},
    }
    assert orjson.loads(wire.Answer.failure("").to_bytes())["response"]["systemError"] == "internal error"

"""Bounded YAML loading: real libyaml on hostile input."""

from __future__ import annotations

import time

import pytest

from provider.core.limits import Limits
from provider.core.safeyaml import check_value, load_documents
from provider.errors import FormatError, LimitExceededError

LIMITS = Limits()


def laughs(levels: int, width: int = 9) -> bytes:
    """A billion-laughs document: ``width ** levels`` leaves from a few lines."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return ("\n".join(lines) + "\n").encode()


def test_plain_documents_and_empty_ones_skipped() -> None:
    docs = load_documents(b"a: 1\n---\n---\n# only a comment\n---\nb: [x, y]\n", limits=LIMITS)
    assert docs == [{"a": 1}, {"b": ["x", "y"]}]


def test_timestamps_and_binary_stay_strings() -> None:
    docs = load_documents(
        b"created: 2021-06-01T10:00:00Z\nday: 2021-06-01\nblob: !!binary aGk=\n", limits=LIMITS
    )
    assert docs == [{"created": "2021-06-01T10:00:00Z", "day": "2021-06-01", "blob": "aGk="}]


def test_small_aliases_are_expanded() -> None:
    docs = load_documents(b"base: &b {x: 1}\ncopy: *b\nmerged:\n  <<: *b\n  y: 2\n", limits=LIMITS)
    assert docs == [{"base": {"x": 1}, "copy": {"x": 1}, "merged": {"x": 1, "y": 2}}]


def test_billion_laughs_rejected_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(LimitExceededError, match="max_yaml_nodes"):
        load_documents(laughs(9), limits=LIMITS)  # 9**9 ~ 387 million leaves
    assert time.perf_counter() - start < 2.0


def test_alias_expansion_counted_against_limit() -> None:
    # 9**3 = 729 leaves plus inner nodes: fine at the default, rejected at 500.
    assert load_documents(laughs(3), limits=LIMITS)
    with pytest.raises(LimitExceededError):
        load_documents(laughs(3), limits=Limits(max_yaml_nodes=500))


def test_node_limit_is_cumulative_over_documents() -> None:
    stream = b"\n---\n".join(b"[1, 2, 3, 4]" for _ in range(10))
    assert len(load_documents(stream, limits=Limits(max_yaml_nodes=60))) == 10
    with pytest.raises(LimitExceededError):
        load_documents(stream, limits=Limits(max_yaml_nodes=40))


def test_recursive_alias_rejected() -> None:
    with pytest.raises(FormatError, match="recursive"):
        load_documents(b"a: &a [x, *a]\n", limits=LIMITS)


@pytest.mark.parametrize("depth", [65, 500])
def test_depth_limit_flow_and_block(depth: int) -> None:
    flow = b"[" * depth + b"]" * depth
    block = "".join("  " * i + "k:\n" for i in range(depth)).encode()
    for data in (flow, block):
        with pytest.raises(LimitExceededError, match="max_depth"):
            load_documents(data, limits=LIMITS)


def test_libyaml_nesting_cap_is_a_format_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(FormatError):
        load_documents(deep, limits=LIMITS)


def test_depth_within_limit_accepted() -> None:
    assert load_documents(b"[" * 10 + b"]" * 10, limits=LIMITS) == [[[[[[[[[[[]]]]]]]]]]]


def test_too_many_documents() -> None:
    stream = b"\n---\n".join(b"a: 1" for _ in range(1001))
    with pytest.raises(LimitExceededError, match="max_documents"):
        load_documents(stream, limits=LIMITS)
    assert len(load_documents(stream, limits=Limits(max_documents=1001))) == 1001


def test_empty_documents_count_towards_document_limit() -> None:
    with pytest.raises(LimitExceededError):
        load_documents(b"---\n" * 50, limits=Limits(max_documents=10))


@pytest.mark.parametrize(
    "data",
    [
        b"a: !!python/object/apply:os.system ['true']\n",
        b"a: !custom x\n",
        b"!!set {a, b}\n",
        b"!!omap [a: 1]\n",
    ],
)
def test_non_core_tags_rejected(data: bytes) -> None:
    with pytest.raises(FormatError):
        load_documents(data, limits=LIMITS)


@pytest.mark.parametrize(
    "data", [b"a: [1, 2\n", b"a: b: c\n", b"a: \xc3\x28 invalid utf-8\n", b"key: 'unterminated\n"]
)
def test_malformed_yaml_is_format_error(data: bytes) -> None:
    with pytest.raises(FormatError):
        load_documents(data, limits=LIMITS)


def test_check_value_nodes_and_depth() -> None:
    check_value({"a": [1, 2, {"b": None}]}, limits=LIMITS)
    with pytest.raises(LimitExceededError, match="max_yaml_nodes"):
        check_value(list(range(100)), limits=Limits(max_yaml_nodes=50))
    deep: list[object] = []
    cursor = deep
    for _ in range(100):
        nxt: list[object] = []
        cursor.append(nxt)
        cursor = nxt
    with pytest.raises(LimitExceededError, match="max_depth"):
        check_value(deep, limits=LIMITS)


def test_check_value_self_reference_ends() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(LimitExceededError):
        check_value(loop, limits=LIMITS)


def test_check_value_shared_subvalues_count_expanded() -> None:
    leaf = list(range(10))
    shared = [leaf] * 10  # 10 references: 111 expanded nodes
    check_value(shared, limits=Limits(max_yaml_nodes=111))
    with pytest.raises(LimitExceededError):
        check_value(shared, limits=Limits(max_yaml_nodes=110))


def test_scalar_below_the_depth_limit_counts() -> None:
    at_limit = b"[" * 63 + b"x" + b"]" * 63  # 63 sequences + the scalar = 64 levels
    assert load_documents(at_limit, limits=LIMITS)
    with pytest.raises(LimitExceededError, match="max_depth"):
        load_documents(b"[" * 64 + b"x" + b"]" * 64, limits=LIMITS)


def test_alias_to_scalar_counts_each_use() -> None:
    data = b"a: &s hello\nb: [" + b", ".join([b"*s"] * 30) + b"]\n"
    assert load_documents(data, limits=Limits(max_yaml_nodes=40))
    with pytest.raises(LimitExceededError):
        load_documents(data, limits=Limits(max_yaml_nodes=30))


@pytest.mark.parametrize(
    "data",
    [
        b"a: 1\na: 2\n",
        b"metadata:\n  name: x\n  name: y\n",
        b"{k: 1, k: 1}\n",
        b"? [complex]\n: 1\nsame: 1\nsame: 2\n",
    ],
)
def test_duplicate_keys_rejected(data: bytes) -> None:
    with pytest.raises(FormatError, match="duplicate key"):
        load_documents(data, limits=LIMITS)


def test_keys_of_different_types_and_merge_keys_are_not_duplicates() -> None:
    data = b"base: &b {x: 1}\nm:\n  <<: *b\n  <<: {y: 2}\n'1': str\n1: int\n"
    (doc,) = load_documents(data, limits=LIMITS)
    assert doc["1"] == "str" and doc[1] == "int"

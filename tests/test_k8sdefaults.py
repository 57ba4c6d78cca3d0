"""The Kubernetes defaulting table, quantities and value equality.

The table test builds, for every kind and every fixed-value default, an
object the way the API server would return it (the signed manifest plus that
one default) and checks it verifies; then it tampers with the value and checks
the difference names the path. So every row of the table is exercised both
ways.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from provider.core.ignore import DEFAULT_IGNORE_RULES
from provider.core.k8sdefaults import (
    POD_SPEC_LABEL,
    Default,
    KindDefaults,
    describe_table,
    expected_pull_policy,
    known_kinds,
    same_value,
    table_for,
    token_volume,
)
from provider.core.limits import DEFAULT_LIMITS
from provider.core.matcher import match_object
from provider.core.quantity import parse_quantity, same_quantity


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("docker.io/library/nginx", "Always"),
        ("registry.example.com:5000/team/app", "Always"),
        ("registry.example.com:5000/team/app:v2", "IfNotPresent"),
        ("registry.example.com:5000/team/app:latest", "Always"),
        ("app@sha256:" + "a" * 64, "IfNotPresent"),
        ("app:latest@sha256:" + "a" * 64, "Always"),
        ("app:1.0@sha256:" + "a" * 64, "IfNotPresent"),
        ("localhost:5000/app", "Always"),
    ],
)
def test_image_pull_policy_default(image: str, policy: str) -> None:
    assert expected_pull_policy(image) == policy


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        (True, True, True),
        ("80", 80, False),
        ("a", "a", True),
        (None, None, True),
        (None, "", False),
        ({}, {}, True),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": 1}, {"b": 1}, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ([1], [1, 1], False),
        ([], {}, False),
    ],
)
def test_same_value(a: Any, b: Any, equal: bool) -> None:
    assert same_value(a, b) is equal
    assert same_value(b, a) is equal


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("5.", Decimal("5")),
        ("1", Decimal(1)),
        (1, Decimal(1)),
        (0.25, Decimal("0.25")),
        ("1Ki", Decimal(1024)),
        ("1Gi", Decimal(2**30)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("2Ei", Decimal(2 * 2**60)),
        ("1k", Decimal(1000)),
        ("1M", Decimal(10**6)),
        ("3E", Decimal(3 * 10**18)),
        ("100n", Decimal("1E-7")),
        ("5u", Decimal("5E-6")),
        ("1e3", Decimal(1000)),
        ("1E-3", Decimal("0.001")),
        ("+2", Decimal(2)),
        ("-2", Decimal(-2)),
        ("0", Decimal(0)),
    ],
)
def test_parse_quantity(text: Any, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "m",
        "1 Gi",
        "1gi",
        "1KB",
        "1e",
        "1e9999",
        "1" * 65,
        "NaN",
        "Infinity",
        "0x10",
        "1_000",
        float("nan"),
        float("inf"),
        10**70,
        True,
        None,
        [],
        {},
    ],
)
def test_not_a_quantity(bad: Any) -> None:
    assert parse_quantity(bad) is None
    assert not same_quantity(bad, bad)


def test_same_quantity() -> None:
    assert same_quantity("0.5", "500m")
    assert same_quantity("1Gi", "1073741824")
    assert not same_quantity("1Gi", "1G")
    assert not same_quantity("1", None)


def test_unknown_kinds_have_no_defaults() -> None:
    table = table_for("example.com", "Widget")
    assert table.kind is None
    assert table.defaults_at(("spec", "replicas")) == []
    assert not table.is_quantity(("spec", "resources", "limits", "cpu"))
    # Same kind name in another group is another kind.
    assert table_for("example.com", "Deployment").kind is None


def test_lookup_with_wildcards_and_indexes() -> None:
    table = table_for("apps", "Deployment")
    (entry,) = table.defaults_at(("spec", "template", "spec", "containers", 3, "terminationMessagePolicy"))
    assert entry.path[-1] == "terminationMessagePolicy"
    assert table.defaults_at(("spec", "template", "spec", "containers", "x", "nope")) == []
    assert table.is_quantity(("spec", "template", "spec", "initContainers", 0, "resources", "limits", "cpu"))
    assert not table.is_quantity(("spec", "template", "spec", "containers", 0, "image"))
    # A literal '*' key matches only the wildcard, once.
    assert len(table.defaults_at(("spec", "template", "spec", "containers", "*", "resources"))) == 1


def test_pod_only_additions_are_not_accepted_in_templates() -> None:
    deploy = table_for("apps", "Deployment")
    pod = table_for("", "Pod")
    assert deploy.defaults_at(("spec", "template", "spec", "tolerations", 0)) == []
    assert pod.defaults_at(("spec", "tolerations", 0))
    assert deploy.defaults_at(("spec", "template", "spec", "enableServiceLinks")) == []
    assert pod.defaults_at(("spec", "enableServiceLinks"))


def test_token_volume_shape() -> None:
    volume = token_volume("kube-api-access-abcde")
    assert volume["projected"]["defaultMode"] == 420
    assert [next(iter(s)) for s in volume["projected"]["sources"]] == [
        "serviceAccountToken",
        "configMap",
        "downwardAPI",
    ]


# -- every fixed-value row, both ways -------------------------------------------------


def _api_version(kind: KindDefaults) -> str:
    return f"{kind.group}/v1" if kind.group else "v1"


def _base(kind: KindDefaults) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": _api_version(kind),
        "kind": kind.kind,
        "metadata": {"name": "x", "namespace": "n", "uid": "11111111-2222-4333-8444-555555555555"},
        "spec": {},
    }
    if kind.pod_spec:
        node = obj
        for key in kind.pod_spec.split("."):
            node = node.setdefault(key, {})
        node["containers"] = [{"name": "c", "image": "img:1"}]
    return obj


def _settable(kind: KindDefaults, obj: dict[str, Any], entry: Default) -> bool:
    """Whether ``entry`` can be added to ``obj`` alone: its parents exist or may appear."""
    table = table_for(kind.group, kind.kind)
    node: Any = obj
    for i, key in enumerate(entry.path[:-1]):
        if isinstance(node, dict) and key in node:
            node = node[key]
            continue
        if not any(e.container for e in table.defaults_at(entry.path[: i + 1])):
            return False
        node = None
    return True


def _put(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = obj
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = copy.deepcopy(value)


def _tampered(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, str):
        return value + "-tampered"
    if isinstance(value, list):
        return [*value, "tampered"]
    return {"tampered": True}


ROWS = [
    (kind, entry)
    for kind in known_kinds()
    for entry in kind.entries
    if entry.has_value and "*" not in entry.path and _settable(kind, _base(kind), entry)
]


@pytest.mark.parametrize(("kind", "entry"), ROWS, ids=[f"{k.kind}:{e.dotted}" for k, e in ROWS])
def test_fixed_default_is_accepted_and_its_tampering_named(kind: KindDefaults, entry: Default) -> None:
    signed = _base(kind)
    live = copy.deepcopy(signed)
    _put(live, entry.path, entry.value)
    result = match_object(live, [signed], rules=DEFAULT_IGNORE_RULES, limits=DEFAULT_LIMITS)
    assert result.diff == (), result.diff
    _put(live, entry.path, _tampered(entry.value))
    result = match_object(live, [signed], rules=DEFAULT_IGNORE_RULES, limits=DEFAULT_LIMITS)
    assert result.diff, entry.dotted
    assert any(d.path.startswith(".".join(entry.path[:1])) for d in result.diff)
    assert entry.dotted in {d.path for d in result.diff} or any(
        entry.dotted.startswith(d.path + ".") for d in result.diff
    ), [d.path for d in result.diff]


def test_the_table_rows_cover_enough_of_the_table() -> None:
    assert len(ROWS) >= 40
    kinds = {k.kind for k, _ in ROWS}
    assert {"Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Service", "Secret"} <= kinds


def test_describe_table() -> None:
    rows = describe_table()
    assert all(set(r) == {"group", "kind", "path", "value"} for r in rows)
    assert {"group": "apps", "kind": "Deployment", "path": "spec.replicas", "value": "1"} in rows
    assert {
        "group": "apps",
        "kind": "Deployment",
        "path": "spec.template.spec",
        "value": "PodSpec defaults, listed below",
    } in rows
    pod_spec = {r["path"]: r["value"] for r in rows if r["kind"] == POD_SPEC_LABEL}
    assert pod_spec["dnsPolicy"] == "ClusterFirst"
    assert pod_spec["enableServiceLinks"].endswith("(Pod only)")
    assert not pod_spec["dnsPolicy"].endswith("(Pod only)")
    assert not any(p.startswith("initContainers") for p in pod_spec)
    # PodSpec rows are printed once, not per workload.
    assert not any(r["path"].startswith("spec.template.spec.") for r in rows)
    listed = {(r["group"], r["kind"]) for r in rows}
    assert {(k.group, k.kind) for k in known_kinds()} <= listed

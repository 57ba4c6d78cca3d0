"""Ignore rules: parsing (every problem at once), anchored segment matching, selectors, built-ins."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from provider.core.ignore import (
    DEFAULT_IGNORE_RULES,
    MAX_PATTERN_CHARS,
    IgnoreRule,
    ObjectSelector,
    PathMatcher,
    default_ignore_rules,
    effective_rules,
    glob_match,
    parse_ignore_fields,
    patterns_for,
)
from provider.core.verdict import ObjectRef
from provider.errors import ConfigError
from tests.conftest import KMS, SHARED_FIXTURES

DEPLOY = ObjectRef(api_version="apps/v1", kind="Deployment", name="web", namespace="shop")
CM = ObjectRef(api_version="v1", kind="ConfigMap", name="sample-cm", namespace="default")


def ignored(pattern: str, path: tuple[str | int, ...]) -> bool:
    return PathMatcher([pattern]).matches(path)


# -- anchoring and segments ------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        # Anchored at the root, whole segments only: the original tool's regex
        # would let "status" hide spec.statusPolicy.
        ("status", ("status",), True),
        ("status", ("status", "phase"), True),
        ("status", ("spec", "statusPolicy"), False),
        ("status", ("statusPolicy",), False),
        ("status", ("spec", "status"), False),
        ("spec.replicas", ("spec", "replicasMax"), False),
        ("spec.replicas", ("spec",), False),
        ("spec.replicas", ("spec", "replicas"), True),
        ("metadata.labels", ("metadata", "labels", "app"), True),
        ("metadata.label", ("metadata", "labels", "app"), False),
        # '*' is exactly one segment: any key or list index.
        ("spec.ports.*.nodePort", ("spec", "ports", 0, "nodePort"), True),
        ("spec.ports.*.nodePort", ("spec", "ports", 17, "nodePort"), True),
        ("spec.ports.*.nodePort", ("spec", "ports", "nodePort"), False),
        ("spec.ports.*.nodePort", ("spec", "ports", 0, "port"), False),
        ("spec.clusterIPs.0", ("spec", "clusterIPs", 0), True),
        ("spec.clusterIPs.0", ("spec", "clusterIPs", 1), False),
        ("metadata.managedFields.*", ("metadata", "managedFields", 3, "manager"), True),
        ("metadata.managedFields.*", ("metadata", "managedFields"), False),
        ("*", ("anything",), True),
        ("*.x", ("a", "x"), True),
        ("*.x", ("a", "y"), False),
        # '*' inside a segment globs within that one key.
        ("metadata.finalizers*", ("metadata", "finalizers"), True),
        ("metadata.finalizers*", ("metadata", "finalizersExtra"), True),
        ("metadata.finalizers*", ("metadata", "finalizer"), False),
        ("metadata.annotations.a/sig*", ("metadata", "annotations", "a/signature_1"), True),
        ("metadata.annotations.a/sig*", ("metadata", "annotations", "b/signature"), False),
        ("metadata.la*.app", ("metadata", "labels", "app"), True),
        ("metadata.la*.app", ("metadata", "labels", "other"), False),
        # Dotted map keys: the pattern text is consumed key by key.
        (
            "metadata.annotations.cosign.sigstore.dev/message",
            ("metadata", "annotations", "cosign.sigstore.dev/message"),
            True,
        ),
        (
            "metadata.annotations.cosign.sigstore.dev/message",
            ("metadata", "annotations", "cosign.sigstore.dev/messages"),
            False,
        ),
        (
            "metadata.annotations.cosign.sigstore.dev/message",
            ("metadata", "annotations", "cosign.sigstore.dev"),
            False,
        ),
        ("metadata.labels.app.kubernetes.io/name", ("metadata", "labels", "app.kubernetes.io/name"), True),
        ("metadata.labels.app.kubernetes.io/name", ("metadata", "labels", "app.kubernetes.io/names"), False),
        ("metadata.labels.app.kubernetes.io/name", ("metadata", "labels", "app"), False),
        ("metadata.labels.app.kubernetes.io/*", ("metadata", "labels", "app.kubernetes.io/part-of"), True),
        ("metadata.labels.*", ("metadata", "labels", "app.kubernetes.io/name"), True),
        ("metadata.labels.*.x", ("metadata", "labels", "a.b", "x"), True),
        # A dotted key and a nested path spelled the same both match (the syntax cannot tell).
        ("a.b.c", ("a", "b.c"), True),
        ("a.b.c", ("a", "b", "c"), True),
        ("a.b.c", ("a", "b.cd"), False),
    ],
)
def test_pattern_matching(pattern: str, path: tuple[str | int, ...], expected: bool) -> None:
    assert ignored(pattern, path) is expected


def test_incremental_state_stops_when_no_pattern_can_match() -> None:
    matcher = PathMatcher(["spec.a", "status"])
    state, hit = matcher.step(matcher.start(), "metadata")
    assert (state, hit) == ((), False)
    state, hit = matcher.step(matcher.start(), "spec")
    assert state and not hit
    assert matcher.step(state, "a")[1] is True


@pytest.mark.parametrize(
    ("glob", "text", "expected"),
    [
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("a*", "a", True),
        ("*c", "abc", True),
        ("a*c", "ac", True),
        ("a*c", "ab", False),
        ("*", "", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxbyy", False),
        ("a?c", "abc", False),  # only '*' is special
        ("a[b]c", "a[b]c", True),
    ],
)
def test_glob(glob: str, text: str, expected: bool) -> None:
    assert glob_match(glob, text) is expected


def test_glob_has_no_catastrophic_backtracking() -> None:
    glob = "*a" * 40 + "b"
    text = "a" * 5000
    # A regex with this many nested '.*' would not finish; the two-pointer match does at once.
    assert glob_match(glob, text) is False
    assert glob_match(glob, text + "b") is True


# -- parsing -----------------------------------------------------------------------


def test_parse_original_tool_configs() -> None:
    for path in (
        KMS / "pkg/k8smanifest/resources/default-config.yaml",
        KMS / "example/config.yaml",
    ):
        doc = yaml.safe_load(path.read_text())
        rules = parse_ignore_fields(doc["ignoreFields"], where="ignoreFields")
        assert rules and all(r.fields for r in rules)
    example = parse_ignore_fields(
        yaml.safe_load((KMS / "example/config.yaml").read_text())["ignoreFields"], where="x"
    )
    assert example == (
        IgnoreRule(objects=(ObjectSelector(kind="ConfigMap", name="sample-cm"),), fields=("data.key2",)),
    )
    assert patterns_for(example, CM) == ("data.key2",)
    assert patterns_for(example, DEPLOY) == ()


def test_parse_integrity_shield_profile() -> None:
    cm = yaml.safe_load((SHARED_FIXTURES / "integrity-shield/manifest-verify-config.yaml").read_text())
    profile = yaml.safe_load(cm["data"]["config.yaml"])["requestFilterProfile"]
    rules = parse_ignore_fields(profile["ignoreFields"], where="ignoreFields")
    patterns = patterns_for(rules, DEPLOY)
    assert "metadata.finalizers*" in patterns
    assert "spec.host" not in patterns  # Route only
    matcher = PathMatcher(patterns)
    assert matcher.matches(("metadata", "finalizers", 0))
    assert matcher.matches(("status", "replicas"))
    assert not matcher.matches(("spec", "statusPolicy"))
    assert not matcher.matches(("spec", "replicas"))


def test_parse_lists_every_problem_at_once() -> None:
    data: list[Any] = [
        {"fields": ["ok.field"], "objects": [{"kind": "Pod"}]},
        {"fields": []},
        {"fields": ["a..b", ".lead", "trail.", 7, "", "has space"]},
        {"objects": [{"kind": 3, "colour": "red"}], "fields": ["x"], "extra": 1},
        "not a mapping",
        {"fields": ["x"], "objects": "Pod"},
        {"fields": ["x" * (MAX_PATTERN_CHARS + 1)]},
        {"fields": ["x"], "objects": [{"name": ""}]},
    ]
    with pytest.raises(ConfigError) as info:
        parse_ignore_fields(data, where="ignoreFields")
    problems = info.value.problems
    text = "\n".join(problems)
    assert "ignoreFields[1].fields must be a non-empty list" in text
    for j in range(6):
        assert f"ignoreFields[2].fields[{j}]" in text
    assert "ignoreFields[3] has unknown key(s) extra" in text
    assert "ignoreFields[3].objects[0] has unknown key(s) colour" in text
    assert "ignoreFields[3].objects[0].kind must be a string" in text
    assert "ignoreFields[4] must be a mapping" in text
    assert "ignoreFields[5].objects must be a list" in text
    assert "ignoreFields[6].fields[0] is" in text
    assert "ignoreFields[7].objects[0].name must not be empty" in text
    assert "ignoreFields[0]" not in text
    assert len(problems) == 14


@pytest.mark.parametrize("data", [{"fields": ["x"]}, "status", 5, True])
def test_parse_rejects_non_lists(data: Any) -> None:
    with pytest.raises(ConfigError, match="where must be a list"):
        parse_ignore_fields(data, where="where")


def test_parse_none_is_empty_and_objects_optional() -> None:
    assert parse_ignore_fields(None, where="x") == ()
    (rule,) = parse_ignore_fields([{"fields": ["status"], "objects": []}], where="x")
    assert rule.objects == () and rule.applies_to(DEPLOY) and rule.applies_to(CM)


def test_parse_bounds_rule_count() -> None:
    with pytest.raises(ConfigError, match="at most"):
        parse_ignore_fields([{"fields": ["x"]}] * 100_000, where="x")


# -- selectors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"kind": "*"}, True),
        ({"kind": "Deployment"}, True),
        ({"kind": "deployment"}, False),  # kinds are case-sensitive
        ({"kind": "Deploy*"}, True),
        ({"kind": "ConfigMap, Deployment"}, True),
        ({"kind": "ConfigMap,Secret"}, False),
        ({"group": "apps", "kind": "Deployment"}, True),
        ({"group": "", "kind": "Deployment"}, False),  # explicit "" is the core group
        ({"group": "extensions"}, False),
        ({"name": "web"}, True),
        ({"name": "we"}, False),
        ({"name": "w*"}, True),
        ({"namespace": "shop"}, True),
        ({"namespace": "other"}, False),
        ({"namespace": "sh*", "name": "web", "kind": "Deployment", "group": "apps"}, True),
    ],
)
def test_selector(selector: dict[str, str], expected: bool) -> None:
    (rule,) = parse_ignore_fields([{"objects": [selector], "fields": ["x"]}], where="x")
    assert rule.applies_to(DEPLOY) is expected


def test_core_group_selector_matches_core_objects() -> None:
    (rule,) = parse_ignore_fields([{"objects": [{"group": ""}], "fields": ["x"]}], where="x")
    assert rule.applies_to(CM) and not rule.applies_to(DEPLOY)


def test_any_selector_of_a_rule_suffices() -> None:
    (rule,) = parse_ignore_fields(
        [{"objects": [{"kind": "Secret"}, {"kind": "Deployment"}], "fields": ["x"]}], where="x"
    )
    assert rule.applies_to(DEPLOY) and not rule.applies_to(CM)


def test_patterns_for_deduplicates_in_rule_order() -> None:
    rules = parse_ignore_fields(
        [
            {"fields": ["b", "a"]},
            {"fields": ["a", "c"], "objects": [{"kind": "Deployment"}]},
            {"fields": ["d"], "objects": [{"kind": "ConfigMap"}]},
        ],
        where="x",
    )
    assert patterns_for(rules, DEPLOY) == ("b", "a", "c")
    assert patterns_for(rules, CM) == ("b", "a", "d")


# -- built-in rules ------------------------------------------------------------------


def test_default_rules_cover_server_bookkeeping_and_signatures() -> None:
    pod = ObjectRef(api_version="v1", kind="Pod", name="p", namespace="n")
    matcher = PathMatcher(patterns_for(DEFAULT_IGNORE_RULES, pod))
    for path in [
        ("metadata", "managedFields"),
        ("metadata", "managedFields", 0, "fieldsV1"),
        ("metadata", "resourceVersion"),
        ("metadata", "uid"),
        ("metadata", "generation"),
        ("metadata", "creationTimestamp"),
        ("metadata", "selfLink"),
        ("metadata", "deletionTimestamp"),
        ("metadata", "deletionGracePeriodSeconds"),
        ("metadata", "annotations", "kubectl.kubernetes.io/last-applied-configuration"),
        ("metadata", "annotations", "cosign.sigstore.dev/message"),
        ("metadata", "annotations", "cosign.sigstore.dev/signature"),
        ("metadata", "annotations", "cosign.sigstore.dev/signature_3"),
        ("metadata", "annotations", "cosign.sigstore.dev/certificate_1"),
        ("metadata", "annotations", "cosign.sigstore.dev/bundle"),
        ("metadata", "annotations", "cosign.sigstore.dev/resourceBundleRef"),
        ("status",),
        ("status", "conditions", 0),
    ]:
        assert matcher.matches(path), path
    for path in [
        ("spec", "statusPolicy"),
        ("metadata", "annotations", "cosign.sigstore.dev/other"),
        ("metadata", "annotations", "example.com/message"),
        ("metadata", "labels"),
        ("metadata", "finalizers", 0),
        ("metadata", "ownerReferences", 0),
        ("spec", "clusterIP"),
        ("secrets",),
    ]:
        assert not matcher.matches(path), path


def test_kind_specific_defaults_apply_only_to_their_kind() -> None:
    deploy = PathMatcher(patterns_for(DEFAULT_IGNORE_RULES, DEPLOY))
    ds = PathMatcher(
        patterns_for(
            DEFAULT_IGNORE_RULES, ObjectRef(api_version="apps/v1", kind="DaemonSet", name="d", namespace="n")
        )
    )
    sa = PathMatcher(
        patterns_for(
            DEFAULT_IGNORE_RULES, ObjectRef(api_version="v1", kind="ServiceAccount", name="s", namespace="n")
        )
    )
    revision = ("metadata", "annotations", "deployment.kubernetes.io/revision")
    generation = ("metadata", "annotations", "deprecated.daemonset.template.generation")
    assert deploy.matches(revision) and not ds.matches(revision)
    assert ds.matches(generation) and not deploy.matches(generation)
    assert sa.matches(("secrets", 0, "name")) and not deploy.matches(("secrets",))


def test_default_rules_follow_the_domain() -> None:
    rules = default_ignore_rules("sig.example.org")
    matcher = PathMatcher(patterns_for(rules, DEPLOY))
    assert matcher.matches(("metadata", "annotations", "sig.example.org/signature_1"))
    assert not matcher.matches(("metadata", "annotations", "cosign.sigstore.dev/signature"))
    assert rules[0] == DEFAULT_IGNORE_RULES[0]


def test_default_rules_round_trip_through_the_config_schema() -> None:
    data = [rule.to_json() for rule in DEFAULT_IGNORE_RULES]
    assert parse_ignore_fields(data, where="ignoreFields") == DEFAULT_IGNORE_RULES


def test_many_patterns_over_a_wide_object_stay_fast() -> None:
    patterns = [f"spec.items.*.field{i}" for i in range(200)] + ["status"]
    matcher = PathMatcher(patterns)
    state = matcher.step(matcher.step(matcher.start(), "spec")[0], "items")[0]
    for i in range(5000):
        child, _ = matcher.step(state, i)
        assert matcher.step(child, "field7")[1] is True
        assert matcher.step(child, "other")[1] is False


def test_effective_rules() -> None:
    configured = parse_ignore_fields([{"fields": ["data.key2"]}], where="x")
    assert effective_rules(configured) == (*DEFAULT_IGNORE_RULES, *configured)
    assert effective_rules(configured, builtin=False) == configured
    custom = effective_rules((), domain="sig.example.org")
    assert custom == default_ignore_rules("sig.example.org") != DEFAULT_IGNORE_RULES

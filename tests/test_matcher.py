"""The matcher: finding the signed manifest for an object and naming every difference.

Live objects in ``tests/data/live`` are written as a v1.30 API server returns
them after ``kubectl apply`` of the ``*.signed.yaml`` next to them (server
defaults, admission-plugin additions, managedFields, status, the
last-applied and signature annotations). No API server runs here: these
files stand in for one, and each attack below mutates them the way an
attacker with write access to the cluster would.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from provider.core.ignore import DEFAULT_IGNORE_RULES, IgnoreRule, parse_ignore_fields, patterns_for
from provider.core.limits import DEFAULT_LIMITS, Limits
from provider.core.matcher import REDACTED, MatchResult, find_manifest, match_object, object_ref
from provider.core.signing import sign_documents
from provider.core.verdict import DiffEntry, DiffOp, Reason
from provider.core.verifier import TrustPolicy, Verifier
from provider.errors import InputError, LimitExceededError
from tests.conftest import KMS
from tests.keyutil import keypair, public_key

LIVE = Path(__file__).resolve().parent / "data" / "live"
NAMES = sorted(p.name.removesuffix(".signed.yaml") for p in LIVE.glob("*.signed.yaml"))
ADDED, CHANGED, REMOVED = DiffOp.ADDED, DiffOp.CHANGED, DiffOp.REMOVED


def signed_of(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((LIVE / f"{name}.signed.yaml").read_text())
    return doc


def live_of(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((LIVE / f"{name}.yaml").read_text())
    return doc


def match(
    live: dict[str, Any],
    manifests: Sequence[Any],
    *,
    rules: Sequence[IgnoreRule] = DEFAULT_IGNORE_RULES,
    namespace: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> MatchResult:
    return match_object(live, manifests, rules=rules, namespace=namespace, limits=limits)


def paths(result: MatchResult) -> list[tuple[str, DiffOp]]:
    return [(d.path, d.op) for d in result.diff]


# -- real objects verify ----------------------------------------------------------


def test_every_kind_the_issue_names_has_a_live_fixture() -> None:
    kinds = {live_of(n)["kind"] for n in NAMES}
    required = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "Service", "ConfigMap"}
    assert required | {"Secret", "ServiceAccount"} <= kinds


@pytest.mark.parametrize("name", NAMES)
def test_live_object_matches_its_signed_manifest(name: str) -> None:
    signed = signed_of(name)
    result = match(live_of(name), [signed])
    assert result.manifest == signed
    assert result.diff == () and result.omitted == 0
    assert result.matches
    assert result.namespace_bound is ("namespace" in signed["metadata"])


@pytest.mark.parametrize("name", NAMES)
def test_without_ignore_rules_the_server_bookkeeping_shows(name: str) -> None:
    result = match(live_of(name), [signed_of(name)], rules=())
    found = {d.path for d in result.diff}
    assert "metadata.resourceVersion" in found
    assert "metadata.managedFields" in found
    assert result.ignored_fields == ()


@pytest.mark.parametrize("name", NAMES)
def test_ignored_fields_are_reported(name: str) -> None:
    live = live_of(name)
    result = match(live, [signed_of(name)])
    assert result.ignored_fields == patterns_for(DEFAULT_IGNORE_RULES, object_ref(live))
    assert "status" in result.ignored_fields


# -- the original tool's own diff inputs ------------------------------------------------


def _mapnode(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((KMS / "pkg/util/mapnode/testdata" / name).read_text())
    return doc


def test_pod_edits_are_named() -> None:
    before, after = _mapnode("data1.json"), _mapnode("data2.json")
    result = match(after, [before])
    assert result.diff == (
        DiffEntry("spec.containers.0.imagePullPolicy", CHANGED, "IfNotPresent", "Always"),
        DiffEntry("spec.securityContext.privileged", ADDED, None, True),
    )
    # Without the built-in rules the server's bookkeeping shows too, in path order.
    assert paths(match(after, [before], rules=())) == [
        ("metadata.resourceVersion", ADDED),
        ("metadata.selfLink", ADDED),
        ("metadata.uid", ADDED),
        ("spec.containers.0.imagePullPolicy", CHANGED),
        ("spec.securityContext.privileged", ADDED),
    ]


def test_pod_edits_reversed_are_removals() -> None:
    result = match(_mapnode("data1.json"), [_mapnode("data2.json")])
    assert paths(result) == [
        ("spec.containers.0.imagePullPolicy", CHANGED),
        ("spec.securityContext.privileged", REMOVED),
    ]
    assert result.diff[1].signed is True and result.diff[1].actual is None


# -- attacks: each must fail and name the path ----------------------------------------------

Mutation = Callable[[dict[str, Any]], None]
T = ("spec", "template", "spec")


def at(obj: dict[str, Any], *path: str | int) -> Any:
    node: Any = obj
    for key in path:
        node = node[key]
    return node


def _set(*path: str | int, value: Any) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        at(obj, *path[:-1])[path[-1]] = copy.deepcopy(value)

    return mutate


def _append(*path: str | int, value: Any) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        at(obj, *path).append(copy.deepcopy(value))

    return mutate


def _delete(*path: str | int) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        del at(obj, *path[:-1])[path[-1]]

    return mutate


EVIL = {"name": "miner", "image": "evil.example/miner:1", "imagePullPolicy": "IfNotPresent"}
HOST_ROOT = {"name": "host", "hostPath": {"path": "/", "type": ""}}
NOT_READY = {
    "effect": "NoExecute",
    "key": "node.kubernetes.io/not-ready",
    "operator": "Exists",
    "tolerationSeconds": 300,
}

ATTACKS: list[tuple[str, str, Mutation, str, DiffOp]] = [
    (
        "hostNetwork",
        "deployment",
        _set(*T, "hostNetwork", value=True),
        "spec.template.spec.hostNetwork",
        ADDED,
    ),
    ("hostPID", "deployment", _set(*T, "hostPID", value=True), "spec.template.spec.hostPID", ADDED),
    ("hostIPC", "statefulset", _set(*T, "hostIPC", value=True), "spec.template.spec.hostIPC", ADDED),
    (
        "privileged",
        "deployment",
        _set(*T, "containers", 0, "securityContext", "privileged", value=True),
        "spec.template.spec.containers.0.securityContext.privileged",
        ADDED,
    ),
    (
        "privileged-new-context",
        "daemonset",
        _set(*T, "containers", 0, "securityContext", value={"privileged": True}),
        "spec.template.spec.containers.0.securityContext",
        ADDED,
    ),
    (
        "extra-container",
        "deployment",
        _append(*T, "containers", value=EVIL),
        "spec.template.spec.containers.2",
        ADDED,
    ),
    (
        "extra-init-container",
        "statefulset",
        _set(*T, "initContainers", value=[EVIL]),
        "spec.template.spec.initContainers",
        ADDED,
    ),
    (
        "hostPath-volume",
        "deployment",
        _append(*T, "volumes", value=HOST_ROOT),
        "spec.template.spec.volumes.2",
        ADDED,
    ),
    (
        "extra-env",
        "deployment",
        _append(*T, "containers", 0, "env", value={"name": "LD_PRELOAD", "value": "/tmp/x.so"}),
        "spec.template.spec.containers.0.env.2",
        ADDED,
    ),
    (
        "changed-env",
        "deployment",
        _set(*T, "containers", 0, "env", 1, "value", value="debug"),
        "spec.template.spec.containers.0.env.1.value",
        CHANGED,
    ),
    (
        "image",
        "deployment",
        _set(*T, "containers", 0, "image", value="registry.example.com/shop/web:1.4.3"),
        "spec.template.spec.containers.0.image",
        CHANGED,
    ),
    ("replicas-signed", "statefulset", _set("spec", "replicas", value=30), "spec.replicas", CHANGED),
    ("replicas-unsigned", "deployment", _set("spec", "replicas", value=3), "spec.replicas", ADDED),
    (
        "pull-never",
        "deployment",
        _set(*T, "containers", 1, "imagePullPolicy", value="IfNotPresent"),
        "spec.template.spec.containers.1.imagePullPolicy",
        ADDED,
    ),
    (
        "run-as-root",
        "deployment",
        _set(*T, "securityContext", value={"runAsUser": 0}),
        "spec.template.spec.securityContext",
        ADDED,
    ),
    (
        "service-account",
        "deployment",
        _set(*T, "serviceAccountName", value="cluster-admin"),
        "spec.template.spec.serviceAccountName",
        CHANGED,
    ),
    (
        "strategy",
        "deployment",
        _set("spec", "strategy", value={"type": "Recreate"}),
        "spec.strategy.type",
        ADDED,
    ),
    (
        "template-toleration",
        "deployment",
        _set(*T, "tolerations", value=[NOT_READY]),
        "spec.template.spec.tolerations",
        ADDED,
    ),
    (
        "removed-probe",
        "deployment",
        _delete(*T, "containers", 0, "readinessProbe"),
        "spec.template.spec.containers.0.readinessProbe",
        REMOVED,
    ),
    (
        "removed-readonly",
        "deployment",
        _set(*T, "containers", 0, "securityContext", "readOnlyRootFilesystem", value=False),
        "spec.template.spec.containers.0.securityContext.readOnlyRootFilesystem",
        CHANGED,
    ),
    (
        "hostPath-changed",
        "daemonset",
        _set(*T, "volumes", 0, "hostPath", "path", value="/etc"),
        "spec.template.spec.volumes.0.hostPath.path",
        CHANGED,
    ),
    (
        "cronjob-hostNetwork",
        "cronjob",
        _set("spec", "jobTemplate", "spec", "template", "spec", "hostNetwork", value=True),
        "spec.jobTemplate.spec.template.spec.hostNetwork",
        ADDED,
    ),
    ("cronjob-schedule", "cronjob", _set("spec", "schedule", value="* * * * *"), "spec.schedule", CHANGED),
    (
        "job-image",
        "job",
        _set(*T, "containers", 0, "image", value="registry.example.com/shop/migrate:latest"),
        "spec.template.spec.containers.0.image",
        CHANGED,
    ),
    (
        "job-foreign-selector",
        "job",
        _set("spec", "selector", "matchLabels", "batch.kubernetes.io/controller-uid", value="other-uid"),
        "spec.selector.matchLabels.batch.kubernetes.io/controller-uid",
        ADDED,
    ),
    (
        "job-label",
        "job",
        _set(*T[:2], "metadata", "labels", "job-name", value="other"),
        "spec.template.metadata.labels.job-name",
        ADDED,
    ),
    ("job-backoff", "job", _set("spec", "backoffLimit", value=1000), "spec.backoffLimit", ADDED),
    ("pod-hostNetwork", "pod", _set("spec", "hostNetwork", value=True), "spec.hostNetwork", ADDED),
    ("pod-hostPath", "pod", _append("spec", "volumes", value=HOST_ROOT), "spec.volumes.1", ADDED),
    (
        "pod-toleration",
        "pod",
        _append("spec", "tolerations", value={"operator": "Exists"}),
        "spec.tolerations.2",
        ADDED,
    ),
    (
        "pod-token-opted-out",
        "pod",
        _set("spec", "automountServiceAccountToken", value=False),
        "spec.automountServiceAccountToken",
        ADDED,
    ),
    (
        "pod-requests",
        "pod",
        _set("spec", "containers", 0, "resources", "requests", "cpu", value="100m"),
        "spec.containers.0.resources.requests.cpu",
        ADDED,
    ),
    (
        "pod-mount",
        "pod",
        _append("spec", "containers", 0, "volumeMounts", value={"name": "host", "mountPath": "/host"}),
        "spec.containers.0.volumeMounts.1",
        ADDED,
    ),
    (
        "pod-priority-class",
        "pod",
        _set("spec", "priorityClassName", value="system-node-critical"),
        "spec.priorityClassName",
        ADDED,
    ),
    ("service-type", "service", _set("spec", "type", value="NodePort"), "spec.type", ADDED),
    (
        "service-external-ips",
        "service",
        _set("spec", "externalIPs", value=["1.2.3.4"]),
        "spec.externalIPs",
        ADDED,
    ),
    (
        "service-target",
        "service",
        _set("spec", "ports", 0, "targetPort", value=8443),
        "spec.ports.0.targetPort",
        CHANGED,
    ),
    (
        "service-target-type",
        "service",
        _set("spec", "ports", 1, "targetPort", value="9090"),
        "spec.ports.1.targetPort",
        ADDED,
    ),
    (
        "service-selector",
        "service",
        _set("spec", "selector", "app.kubernetes.io/name", value="db"),
        "spec.selector.app.kubernetes.io/name",
        CHANGED,
    ),
    ("configmap-data", "configmap", _set("data", "mode", value="debug"), "data.mode", CHANGED),
    ("configmap-extra", "configmap", _set("data", "extra", value="x"), "data.extra", ADDED),
    ("configmap-removed", "configmap", _delete("data", "mode"), "data.mode", REMOVED),
    ("secret-data", "secret", _set("data", "password", value="aGFja2Vk"), "data.password", CHANGED),
    ("secret-type", "secret", _set("type", value="kubernetes.io/dockerconfigjson"), "type", ADDED),
    (
        "sa-automount",
        "serviceaccount",
        _set("automountServiceAccountToken", value=True),
        "automountServiceAccountToken",
        CHANGED,
    ),
    (
        "sa-pull-secret",
        "serviceaccount",
        _set("imagePullSecrets", value=[{"name": "stolen"}]),
        "imagePullSecrets",
        ADDED,
    ),
    (
        "namespace-label",
        "namespace",
        _set("metadata", "labels", "pod-security.kubernetes.io/enforce", value="privileged"),
        "metadata.labels.pod-security.kubernetes.io/enforce",
        ADDED,
    ),
    (
        "pvc-prebound",
        "pvc",
        _set("spec", "volumeName", value="pv-of-another-tenant"),
        "spec.volumeName",
        ADDED,
    ),
    (
        "pvc-size",
        "pvc",
        _set("spec", "resources", "requests", "storage", value="500Gi"),
        "spec.resources.requests.storage",
        CHANGED,
    ),
    (
        "owner-reference",
        "configmap",
        _set(
            "metadata",
            "ownerReferences",
            value=[{"apiVersion": "v1", "kind": "Secret", "name": "x", "uid": "u"}],
        ),
        "metadata.ownerReferences",
        ADDED,
    ),
    (
        "finalizer",
        "deployment",
        _set("metadata", "finalizers", value=["example.com/block"]),
        "metadata.finalizers",
        ADDED,
    ),
    (
        "label",
        "deployment",
        _set("metadata", "labels", "app.kubernetes.io/part-of", value="x"),
        "metadata.labels.app.kubernetes.io/part-of",
        CHANGED,
    ),
    ("api-version", "deployment", _set("apiVersion", value="apps/v1beta2"), "apiVersion", CHANGED),
]


@pytest.mark.parametrize(
    ("fixture", "mutate", "path", "op"), [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_attack_fails_and_names_the_path(fixture: str, mutate: Mutation, path: str, op: DiffOp) -> None:
    live = live_of(fixture)
    mutate(live)
    result = match(live, [signed_of(fixture)])
    assert result.manifest is not None
    assert (path, op) in paths(result), paths(result)
    assert not result.matches


def test_extra_container_is_summarised_when_large() -> None:
    live = live_of("deployment")
    big = {**EVIL, "command": ["sh", "-c", "x" * 500], "args": ["--pool", "p"]}
    at(live, *T, "containers").append(big)
    (entry,) = match(live, [signed_of("deployment")]).diff
    assert entry == DiffEntry("spec.template.spec.containers.2", ADDED, None, "{...5 keys}")


def test_small_added_mapping_is_shown_as_json() -> None:
    live = live_of("daemonset")
    at(live, *T, "containers", 0)["securityContext"] = {"privileged": True}
    (entry,) = match(live, [signed_of("daemonset")]).diff
    assert entry.actual == {"privileged": True}


def test_pod_token_volume_needs_automount() -> None:
    signed = signed_of("pod")
    signed["spec"]["automountServiceAccountToken"] = False
    live = live_of("pod")
    live["spec"]["automountServiceAccountToken"] = False
    assert paths(match(live, [signed])) == [
        ("spec.containers.0.volumeMounts.0", ADDED),
        ("spec.volumes.0", ADDED),
    ]


def test_pod_token_volume_must_be_exactly_the_plugins() -> None:
    live = live_of("pod")
    live["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"] = "vault"
    assert ("spec.volumes.0", ADDED) in paths(match(live, [signed_of("pod")]))
    live = live_of("pod")
    live["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = "/etc"
    assert ("spec.containers.0.volumeMounts.0", ADDED) in paths(match(live, [signed_of("pod")]))


def test_pod_node_chosen_at_creation_is_a_difference() -> None:
    live = live_of("pod")
    # On create the server resets status: no PodScheduled condition yet.
    live["status"] = {"phase": "Pending", "qosClass": "Guaranteed"}
    assert paths(match(live, [signed_of("pod")])) == [("spec.nodeName", ADDED)]


def test_pod_priority_and_preemption_come_from_admission() -> None:
    live = live_of("pod")
    live["spec"]["preemptionPolicy"] = "Always"
    assert paths(match(live, [signed_of("pod")])) == [("spec.preemptionPolicy", ADDED)]
    live = live_of("pod")
    live["spec"]["priority"] = "high"
    assert paths(match(live, [signed_of("pod")])) == [("spec.priority", ADDED)]


def test_service_allocations_are_accepted_only_when_unsigned() -> None:
    signed = signed_of("service")
    signed["spec"]["clusterIP"] = "None"
    live = live_of("service")
    # An ignore rule on clusterIP would let a headless Service silently get an IP.
    assert paths(match(live, [signed])) == [("spec.clusterIP", CHANGED)]
    live["spec"]["clusterIP"] = "None"
    live["spec"]["clusterIPs"] = ["None"]
    assert match(live, [signed]).diff == ()


def test_service_node_ports_only_for_node_port_services() -> None:
    signed = signed_of("service")
    live = live_of("service")
    live["spec"]["ports"][0]["nodePort"] = 30080
    assert paths(match(live, [signed])) == [("spec.ports.0.nodePort", ADDED)]
    signed["spec"]["type"] = "NodePort"
    live["spec"]["type"] = "NodePort"
    live["spec"]["externalTrafficPolicy"] = "Cluster"
    live["spec"]["ports"][1]["nodePort"] = 31090
    assert match(live, [signed]).diff == ()
    live["spec"]["externalTrafficPolicy"] = "Local"
    assert paths(match(live, [signed])) == [("spec.externalTrafficPolicy", ADDED)]


def test_pvc_volume_named_after_its_own_uid() -> None:
    live = live_of("pvc")
    live["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000"
    assert paths(match(live, [signed_of("pvc")])) == [("spec.volumeName", ADDED)]


def test_job_labels_copied_only_when_none_signed() -> None:
    signed = signed_of("job")
    signed["metadata"]["labels"] = {"team": "shop"}
    live = live_of("job")
    live["metadata"]["labels"]["team"] = "shop"
    found = paths(match(live, [signed]))
    assert ("metadata.labels.app", ADDED) in found
    assert ("metadata.labels.job-name", ADDED) in found


# -- secrets never leak --------------------------------------------------------------


def test_secret_values_are_redacted() -> None:
    live = live_of("secret")
    live["data"]["password"] = "aGFja2Vk"
    live["data"]["token"] = "c2VjcmV0"
    result = match(live, [signed_of("secret")])
    assert result.diff == (
        DiffEntry("data.password", CHANGED, REDACTED, REDACTED),
        DiffEntry("data.token", ADDED, None, REDACTED),
    )


def test_secret_string_data_compares_as_base64_data() -> None:
    live = live_of("secret")
    live["data"]["username"] = "cm9vdA=="  # root
    result = match(live, [signed_of("secret")])
    assert result.diff == (DiffEntry("data.username", CHANGED, REDACTED, REDACTED),)
    del live["data"]
    result = match(live, [signed_of("secret")])
    assert result.diff == (DiffEntry("data", REMOVED, REDACTED, None),)


def test_secret_last_applied_annotation_and_containers_stay_hidden() -> None:
    live = live_of("secret")
    live["metadata"]["labels"] = {"a": "b"}
    result = match(live, [signed_of("secret")], rules=())
    text = json.dumps([d.to_json() for d in result.diff])
    assert "czNjcjN0" not in text and "s3cr3t" not in text and "shop" not in text.replace("metadata", "")
    by_path = {d.path: d for d in result.diff}
    assert by_path["metadata.annotations"].actual == "{...3 keys}"
    assert by_path["metadata.labels"].actual == "{...1 key}"


def test_secret_redaction_is_only_for_secrets() -> None:
    live = live_of("configmap")
    live["data"]["mode"] = "debug"
    (entry,) = match(live, [signed_of("configmap")]).diff
    assert (entry.signed, entry.actual) == ("production", "debug")


# -- bounds ---------------------------------------------------------------------


def test_long_values_are_truncated() -> None:
    live = live_of("configmap")
    live["data"]["mode"] = "y" * 1000
    limits = Limits(max_diff_value_chars=40)
    (entry,) = match(live, [signed_of("configmap")], limits=limits).diff
    assert entry.actual == "y" * 37 + "..."
    assert entry.signed == "production"


def test_entries_are_capped_and_the_rest_counted_in_order() -> None:
    live = live_of("configmap")
    for i in range(50):
        live["data"][f"k{i:02d}"] = "v"
    result = match(live, [signed_of("configmap")], limits=Limits(max_diff_entries=5))
    assert [d.path for d in result.diff] == [f"data.k{i:02d}" for i in range(5)]
    assert result.omitted == 45
    assert not result.matches


def test_order_is_deterministic() -> None:
    live = live_of("deployment")
    for mutate in (a[2] for a in ATTACKS if a[1] == "deployment"):
        mutate(live)
    first = match(live, [signed_of("deployment")], limits=Limits(max_diff_entries=1000))
    again = match(copy.deepcopy(live), [signed_of("deployment")], limits=Limits(max_diff_entries=1000))
    assert first == again
    keys = [d.path for d in first.diff]
    assert len(keys) == len(set(keys)) > 15


def _nest(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


def widget(spec: Any, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "n"},
        "spec": spec,
        **extra,
    }


@pytest.mark.parametrize("side", ["both", "live-only", "signed-only"])
def test_depth_is_bounded(side: str) -> None:
    deep = _nest(200)
    signed = widget(deep if side != "live-only" else {})
    live = widget(copy.deepcopy(deep) if side != "signed-only" else {})
    if side == "both":
        # Identical trees are decided without walking; a difference at the
        # bottom forces the walk, which must stop at the limit.
        _nest_leaf(live["spec"])["leaf"] = 2
    with pytest.raises(LimitExceededError, match="deeper than 64"):
        match(live, [signed])


def _nest_leaf(node: dict[str, Any]) -> dict[str, Any]:
    while "n" in node:
        node = node["n"]
    return node


@pytest.mark.parametrize("depth", [200, 5000])
def test_identical_deep_trees_never_crash(depth: int) -> None:
    deep = _nest(depth)
    try:
        result = match(widget(_nest(depth)), [widget(deep)])
    except LimitExceededError:
        return  # too deep to decide without walking: bounded, as required
    assert result.diff == ()


def test_depth_limit_allows_what_fits() -> None:
    deep = _nest(50)
    assert match(widget(deep), [widget(copy.deepcopy(deep))]).diff == ()


def test_large_lists_compare_item_by_item() -> None:
    items = [{"name": f"i{i}", "value": i} for i in range(50_000)]
    live_items = copy.deepcopy(items)
    live_items[31_337]["value"] = -1
    result = match(widget({"items": live_items}), [widget({"items": items})])
    assert paths(result) == [("spec.items.31337.value", CHANGED)]


def test_many_added_keys_are_counted_not_stored() -> None:
    live = widget({"a": {f"k{i}": i for i in range(20_000)}})
    result = match(live, [widget({"a": {}})])
    assert len(result.diff) == DEFAULT_LIMITS.max_diff_entries
    assert result.omitted == 20_000 - DEFAULT_LIMITS.max_diff_entries


# -- equivalences ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("signed", "live", "equal"),
    [
        ("0.5", "500m", True),
        (0.5, "500m", True),
        (1, "1", True),
        ("1000m", "1", True),
        ("100m", "0.1", True),
        ("1Gi", "1073741824", True),
        ("1024Mi", "1Gi", True),
        ("1.5Gi", "1536Mi", True),
        ("1e3", "1k", True),
        ("1Gi", "1G", False),
        ("500m", "501m", False),
        ("1", "1x", False),
        ("0.5", 0.5, True),
        (True, "1", False),
    ],
)
def test_quantities_compare_by_value(signed: Any, live: Any, equal: bool) -> None:
    s = signed_of("deployment")
    s["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = signed
    obj = live_of("deployment")
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = live
    result = match(obj, [s])
    assert (result.diff == ()) is equal, result.diff


def test_quantity_normalisation_is_only_at_quantity_paths() -> None:
    signed = signed_of("configmap")
    signed["data"]["mode"] = "0.5"
    live = live_of("configmap")
    live["data"]["mode"] = "500m"
    assert paths(match(live, [signed])) == [("data.mode", CHANGED)]


def test_int_and_string_ports_differ() -> None:
    signed = signed_of("service")
    signed["spec"]["ports"][1]["targetPort"] = 9090
    live = live_of("service")
    assert match(live, [signed]).diff == ()
    live["spec"]["ports"][1]["targetPort"] = "9090"
    assert paths(match(live, [signed])) == [("spec.ports.1.targetPort", CHANGED)]


def test_booleans_are_not_numbers() -> None:
    assert paths(match(widget({"x": True}), [widget({"x": 1})])) == [("spec.x", CHANGED)]
    assert match(widget({"x": 1.0}), [widget({"x": 1})]).diff == ()


def test_null_equals_absent() -> None:
    assert match(widget({"a": None, "b": 1}), [widget({"b": 1, "c": None})]).diff == ()
    # Inside lists a null is a value.
    assert paths(match(widget({"l": [None]}), [widget({"l": [1]})])) == [("spec.l.0", CHANGED)]


def test_non_string_keys_in_the_signed_yaml() -> None:
    signed = yaml.safe_load(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: n}\ndata: {1: a, 2.5: b, null: c}\n"
    )
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "n"},
        "data": {"1": "a", "2.5": "b", "null": "c"},
    }
    assert match(live, [signed]).diff == ()


# -- unknown kinds and ignore rules ------------------------------------------------------


def test_unknown_kinds_are_strict() -> None:
    signed = widget({"size": 3})
    live = widget(
        {"size": 3, "replicas": 1, "template": {"spec": {"dnsPolicy": "ClusterFirst"}}}, status={"ok": True}
    )
    assert paths(match(live, [signed])) == [("spec.replicas", ADDED), ("spec.template", ADDED)]


def test_built_in_defaults_need_the_right_group() -> None:
    signed = {"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}}
    live = copy.deepcopy(signed)
    live["spec"]["replicas"] = 1
    assert paths(match(live, [signed])) == [("spec.replicas", ADDED)]


def test_anchored_rules_do_not_hide_lookalike_fields() -> None:
    rules = parse_ignore_fields([{"fields": ["status", "spec.replicas"]}], where="x")
    signed = widget({"statusPolicy": "strict", "replicas": 1, "replicasMax": 2})
    live = widget({"statusPolicy": "off", "replicas": 9, "replicasMax": 5}, status={"x": 1})
    assert paths(match(live, [signed], rules=rules)) == [
        ("spec.replicasMax", CHANGED),
        ("spec.statusPolicy", CHANGED),
    ]


def test_configured_rule_from_the_original_example() -> None:
    rules = parse_ignore_fields(
        yaml.safe_load((KMS / "example/config.yaml").read_text())["ignoreFields"], where="ignoreFields"
    )
    manifest = yaml.safe_load((KMS / "pkg/k8smanifest/testdata/sample-configmap.yaml").read_text())
    live = copy.deepcopy(manifest)
    live["metadata"]["namespace"] = "default"
    live["data"]["key2"] = "changed"
    assert match(live, [manifest], rules=(*DEFAULT_IGNORE_RULES, *rules)).diff == ()
    assert paths(match(live, [manifest])) == [("data.key2", ADDED)]
    live["data"]["key1"] = "changed"
    assert paths(match(live, [manifest], rules=(*DEFAULT_IGNORE_RULES, *rules))) == [("data.key1", CHANGED)]


def test_wildcard_rule_covers_an_added_list() -> None:
    rules = parse_ignore_fields([{"fields": ["spec.extra.*"]}], where="x")
    live = widget({"extra": [{"a": 1}, {"b": 2}]})
    assert match(live, [widget({})], rules=rules).diff == ()
    # An empty added list is not explained by 'spec.extra.*' (which names its items only).
    assert paths(match(widget({"extra": []}), [widget({})], rules=rules)) == [("spec.extra", ADDED)]


def test_empty_added_mapping_outside_the_table_is_a_difference() -> None:
    live = live_of("deployment")
    at(live, *T)["nodeSelector"] = {}
    assert paths(match(live, [signed_of("deployment")])) == [("spec.template.spec.nodeSelector", ADDED)]


def test_metadata_namespace_mismatch_in_the_signed_manifest_is_not_compared_twice() -> None:
    live = live_of("configmap")
    signed = signed_of("configmap")
    del signed["metadata"]["namespace"]
    result = match(live, [signed])
    assert result.diff == () and result.namespace_bound is False


# -- finding the manifest -----------------------------------------------------------


def cm(name: str = "c", namespace: str | None = "n", api_version: str = "v1", **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": "ConfigMap", "metadata": meta, "data": dict(data)}


def test_not_in_bundle() -> None:
    result = match(cm(), [cm(name="other"), cm(namespace="elsewhere")])
    assert result == MatchResult(None, (), 0, None, patterns_for(DEFAULT_IGNORE_RULES, object_ref(cm())))
    assert not result.matches


@pytest.mark.parametrize(
    "manifest",
    [
        {**cm(), "kind": "Secret"},
        cm(api_version="example.com/v1"),
        cm(name="C"),
        cm(namespace="N"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "n"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": 5}},
        {"apiVersion": 1, "kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": ["c"]},
        ["not", "a", "mapping"],
        "text",
        None,
    ],
)
def test_other_or_malformed_manifests_do_not_match(manifest: Any) -> None:
    assert match(cm(), [manifest]).manifest is None


def test_group_must_match_but_version_is_a_field() -> None:
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n"},
        "spec": {"replicas": 1},
    }
    older = {**deploy, "apiVersion": "apps/v1beta2"}
    other_group = {**deploy, "apiVersion": "extensions/v1beta1"}
    assert match(deploy, [other_group]).manifest is None
    result = match(deploy, [older])
    assert result.manifest is older
    assert result.diff == (DiffEntry("apiVersion", CHANGED, "apps/v1beta2", "apps/v1"),)


def test_namespace_less_manifest_matches_anywhere_unbound() -> None:
    signed = cm(namespace=None, a="1")
    for ns in ("n", "prod", "kube-system"):
        result = match(cm(namespace=ns, a="1"), [signed])
        assert result.manifest is signed and result.namespace_bound is False and result.diff == ()


def test_request_namespace_fills_in_the_object() -> None:
    signed = cm(namespace="n", a="1")
    live = cm(namespace=None, a="1")
    assert match(live, [signed]).manifest is None
    result = match(live, [signed], namespace="n")
    assert result.manifest is signed and result.namespace_bound is True and result.diff == ()
    assert match(live, [signed], namespace="m").manifest is None
    # The object's own namespace wins over the request's.
    assert object_ref(cm(namespace="n"), namespace="m").namespace == "n"


@pytest.mark.parametrize("order", ["namespaced-first", "namespaced-last"])
def test_namespaced_manifest_preferred(order: str) -> None:
    bound, unbound = cm(a="bound"), cm(namespace=None, a="unbound")
    manifests = [bound, unbound] if order == "namespaced-first" else [unbound, bound]
    result = match(cm(a="unbound"), manifests)
    assert result.manifest is bound and result.namespace_bound is True
    assert paths(result) == [("data.a", CHANGED)]


def test_same_version_preferred_then_bundle_order() -> None:
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}}
    v1beta2 = {**live, "apiVersion": "apps/v1beta2"}
    first, second = copy.deepcopy(live), copy.deepcopy(live)
    first["spec"] = {"paused": True}
    assert find_manifest([v1beta2, first, second], object_ref(live)) == (first, True)
    assert find_manifest([v1beta2, second, first], object_ref(live)) == (second, True)
    assert find_manifest([v1beta2], object_ref(live)) == (v1beta2, True)


@pytest.mark.parametrize(
    "obj",
    [
        "text",
        [],
        {"kind": "ConfigMap", "metadata": {"name": "c"}},
        {"apiVersion": "v1", "metadata": {"name": "c"}},
        {"apiVersion": "v1", "kind": 5, "metadata": {}},
        {"apiVersion": "", "kind": "ConfigMap"},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": "c"},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": 3}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ["n"]}},
    ],
)
def test_object_ref_rejects_non_objects(obj: Any) -> None:
    with pytest.raises(InputError):
        object_ref(obj)
    with pytest.raises(InputError):
        match(obj, [cm()])


def test_object_ref_of_a_cluster_scoped_object() -> None:
    ref = object_ref(live_of("namespace"))
    assert (ref.group, ref.kind, ref.name, ref.namespace) == ("", "Namespace", "shop", "")


def test_signed_empty_containers_may_be_dropped_by_typed_kinds() -> None:
    signed = signed_of("deployment")
    signed["metadata"]["annotations"] = {}
    signed["spec"]["template"]["spec"]["nodeSelector"] = {}
    signed["spec"]["template"]["spec"]["containers"][1]["args"] = []
    assert match(live_of("deployment"), [signed]).diff == ()
    # A custom resource keeps what was written: an empty object may switch something on.
    signed_widget = widget({"tls": {}})
    signed_widget["metadata"]["labels"] = {}
    result = match(widget({}), [signed_widget])
    assert paths(result) == [("spec.tls", REMOVED)]


def test_pod_resize_policy_added_by_newer_servers() -> None:
    live = live_of("pod")
    live["spec"]["containers"][0]["resizePolicy"] = [
        {"resourceName": "cpu", "restartPolicy": "NotRequired"},
        {"resourceName": "memory", "restartPolicy": "NotRequired"},
    ]
    assert match(live, [signed_of("pod")]).diff == ()
    live["spec"]["containers"][0]["resizePolicy"][1]["restartPolicy"] = "RestartContainer"
    assert paths(match(live, [signed_of("pod")])) == [("spec.containers.0.resizePolicy.1", ADDED)]


def test_http_get_path_defaults_to_root() -> None:
    signed = signed_of("deployment")
    del signed["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
    live = live_of("deployment")
    live["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/"
    assert match(live, [signed]).diff == ()
    live["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/admin"
    assert paths(match(live, [signed])) == [
        ("spec.template.spec.containers.0.readinessProbe.httpGet.path", ADDED)
    ]


def test_unnamed_volume_source_becomes_empty_dir() -> None:
    signed = signed_of("deployment")
    signed["spec"]["template"]["spec"]["volumes"].append({"name": "scratch"})
    live = live_of("deployment")
    live["spec"]["template"]["spec"]["volumes"].append({"name": "scratch", "emptyDir": {}})
    assert match(live, [signed]).diff == ()
    live["spec"]["template"]["spec"]["volumes"][2] = {"name": "scratch", "emptyDir": {"medium": "Memory"}}
    assert paths(match(live, [signed])) == [("spec.template.spec.volumes.2.emptyDir", ADDED)]


def test_hpa_behavior_defaults_fill_only_a_signed_behavior() -> None:
    signed = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        },
    }
    live = copy.deepcopy(signed)
    live["spec"]["minReplicas"] = 1
    live["spec"]["metrics"] = [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        }
    ]
    live["spec"]["behavior"] = {
        "scaleDown": {
            "policies": [{"periodSeconds": 15, "type": "Percent", "value": 100}],
            "selectPolicy": "Max",
            "stabilizationWindowSeconds": 60,
        },
        "scaleUp": {
            "policies": [
                {"periodSeconds": 15, "type": "Pods", "value": 4},
                {"periodSeconds": 15, "type": "Percent", "value": 100},
            ],
            "selectPolicy": "Max",
            "stabilizationWindowSeconds": 0,
        },
    }
    assert match(live, [signed]).diff == ()
    live["spec"]["behavior"]["scaleUp"]["policies"][0]["value"] = 400
    assert paths(match(live, [signed])) == [("spec.behavior.scaleUp.policies", ADDED)]
    live["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] = 5
    assert ("spec.metrics", ADDED) in paths(match(live, [signed]))


def test_byte_fields_compare_as_canonical_base64() -> None:
    signed = signed_of("secret")
    signed["data"]["password"] = "czNjcjN0LXBh\nc3N3MHJk\n"  # a folded YAML block
    assert match(live_of("secret"), [signed]).diff == ()
    cm_signed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "n"}}
    cm_signed["binaryData"] = {"blob": "AAEC\nAwQ="}
    cm_live = {**cm_signed, "binaryData": {"blob": "AAECAwQ="}}
    assert match(cm_live, [cm_signed]).diff == ()
    cm_live["binaryData"] = {"blob": "AAECAwU="}
    assert paths(match(cm_live, [cm_signed])) == [("binaryData.blob", CHANGED)]


def test_unsigned_cluster_ip_must_be_an_address() -> None:
    live = live_of("service")
    live["spec"]["clusterIP"] = "None"
    live["spec"]["clusterIPs"] = ["None"]
    assert paths(match(live, [signed_of("service")])) == [("spec.clusterIP", ADDED)]
    live["spec"]["clusterIP"] = live["spec"]["clusterIPs"][0] = "fd00:10:96::a"
    assert match(live, [signed_of("service")]).diff == ()


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("web-shop.apps.example.com", True),
        ("login.example.com", False),
        ("web-shop.", False),
        ("web-shopx.apps.example.com", False),
    ],
)
def test_route_host_only_the_generated_one(host: str, ok: bool) -> None:
    signed = {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"to": {"kind": "Service", "name": "web"}},
    }
    live = copy.deepcopy(signed)
    live["spec"].update(host=host, wildcardPolicy="None")
    live["spec"]["to"]["weight"] = 100
    assert (match(live, [signed]).diff == ()) is ok


# -- end to end through the verifier ---------------------------------------------------


def _signed_live(name: str) -> dict[str, Any]:
    """The live fixture carrying a real signature over its signed file (fresh test key)."""
    signed_yaml = sign_documents((LIVE / f"{name}.signed.yaml").read_bytes(), keypair("matcher")[0])
    annotations = yaml.safe_load(signed_yaml)["metadata"]["annotations"]
    live = live_of(name)
    live["metadata"]["annotations"].update(annotations)
    return live


@pytest.mark.parametrize("name", NAMES)
def test_verifier_admits_the_live_object(name: str) -> None:

    verifier = Verifier(TrustPolicy(keys=(public_key("matcher"),)))
    verdict = verifier.verify(_signed_live(name))
    assert verdict.reason is Reason.VERIFIED, verdict.message


@pytest.mark.parametrize(
    ("fixture", "mutate", "path", "op"),
    [a[1:] for a in ATTACKS if a[0] in {"hostNetwork", "extra-container", "pod-hostPath", "secret-data"}],
)
def test_verifier_denies_the_attack_naming_the_path(
    fixture: str, mutate: Mutation, path: str, op: DiffOp
) -> None:

    live = _signed_live(fixture)
    mutate(live)
    verdict = Verifier(TrustPolicy(keys=(public_key("matcher"),))).verify(live)
    assert verdict.reason is Reason.MANIFEST_MISMATCH
    assert (path, op) in [(d.path, d.op) for d in verdict.diff]
    assert path in verdict.message

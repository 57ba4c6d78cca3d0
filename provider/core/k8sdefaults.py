"""Fields a real API server adds to built-in kinds, and the values it adds.

An object that went through ``kubectl apply`` carries fields its signer never
wrote: defaults from ``pkg/apis/*/v1/defaults.go``, values the admission
plugins fill in (ServiceAccount, DefaultTolerationSeconds, Priority,
DefaultStorageClass) and values the registry allocates (a Service's cluster
IP). The matcher accepts such an *added* field only when the table below
knows it for the object's (group, kind) and path, and only with the value the
server would have written. Anything else, an extra container, ``hostNetwork:
true``, a changed image, is a difference.

Each entry is a path pattern (``*`` is one key or list index) and a check. A
``container`` entry says that a mapping or list may appear at that path as a
whole (``strategy``, ``tolerations``); its contents are then checked entry by
entry, so ``strategy: {type: Recreate}`` added where none was signed fails.

Kinds not in the table (custom resources, a built-in kind name in another
group) are compared strictly, apart from the ignore rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provider.core.quantity import same_quantity

Path = tuple[str | int, ...]
_MISSING: Any = object()


def same_value(a: Any, b: Any) -> bool:
    """JSON equality: a bool is never a number, ``1 == 1.0``, ``"80" != 80``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return len(a) == len(b) and all(k in b and same_value(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is None and b is None
    return bool(a == b)


@dataclass(frozen=True, slots=True)
class Context:
    """What a computed default may look at: the whole live object and the signed manifest."""

    live: Mapping[str, Any]
    signed: Mapping[str, Any]
    path: Path

    def live_at(self, path: Sequence[str | int]) -> Any:
        """The live value at ``path``, or None when absent."""
        return _get(self.live, path)

    def signed_at(self, path: Sequence[str | int]) -> Any:
        return _get(self.signed, path)

    def sibling(self, key: str) -> Any:
        return _get(self.live, (*self.path[:-1], key))


def _get(root: Any, path: Sequence[str | int]) -> Any:
    node = root
    for key in path:
        if isinstance(node, Mapping):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            return None
    return node


Check = Callable[[Any, Context], bool]


@dataclass(frozen=True, slots=True)
class Default:
    """One defaulted field: where it may be added, and which value is accepted there."""

    path: tuple[str, ...]
    description: str
    check: Check = field(compare=False)
    container: bool = False
    # The one accepted value, for entries that have a single fixed value.
    value: Any = field(default=_MISSING, compare=False)

    @property
    def has_value(self) -> bool:
        return self.value is not _MISSING

    def accepts(self, value: Any, ctx: Context) -> bool:
        return bool(self.check(value, ctx))

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _split(text: str, *literal: str) -> tuple[str, ...]:
    """``"a.b"`` -> ("a", "b"); ``literal`` segments may contain dots (label keys)."""
    return (*text.split("."), *literal) if text else tuple(literal)


def exact(path: str, value: Any, *literal: str) -> Default:
    return Default(_split(path, *literal), _show(value), lambda v, _ctx: same_value(v, value), value=value)


def one_of(path: str, *values: Any, note: str = "") -> Default:
    shown = " or ".join(_show(v) for v in values)
    return Default(_split(path), shown + (f" ({note})" if note else ""), lambda v, _: _in(v, values))


def computed(path: str, description: str, check: Check, *literal: str) -> Default:
    return Default(_split(path, *literal), description, check)


def container(path: str, note: str = "", *literal: str) -> Default:
    text = "may appear whole if every entry in it is a default"
    return Default(_split(path, *literal), text + (f" ({note})" if note else ""), _never, container=True)


def _never(_value: Any, _ctx: Context) -> bool:
    return False


def _in(value: Any, values: Iterable[Any]) -> bool:
    return any(same_value(value, v) for v in values)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if value == "" or value.strip() != value else value
    if value is True or value is False:
        return str(value).lower()
    if value == {}:
        return "{}"
    if isinstance(value, list | Mapping):
        return "".join(c for c in repr(value) if c != "'")
    return str(value)


# -- computed checks ------------------------------------------------------------


def expected_pull_policy(image: str) -> str:
    """Kubernetes' imagePullPolicy default: Always for ``:latest`` or untagged images."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else ""
    if not tag:
        return "IfNotPresent" if digest else "Always"
    return "Always" if tag == "latest" else "IfNotPresent"


def _pull_policy(value: Any, ctx: Context) -> bool:
    image = ctx.sibling("image")
    return isinstance(image, str) and same_value(value, expected_pull_policy(image))


def _equals_sibling(key: str) -> Check:
    def check(value: Any, ctx: Context) -> bool:
        other = ctx.sibling(key)
        return other is not None and same_value(value, other)

    return check


def _equals_live(path: Path) -> Check:
    def check(value: Any, ctx: Context) -> bool:
        other = ctx.live_at(path)
        return other is not None and same_value(value, other)

    return check


def _sa_name(value: Any, ctx: Context) -> bool:
    # Conversion fills serviceAccountName from the deprecated serviceAccount.
    return _equals_sibling("serviceAccount")(value, ctx)


def _pod_sa_name(value: Any, ctx: Context) -> bool:
    # The ServiceAccount admission plugin names "default" when none is given.
    return _sa_name(value, ctx) or same_value(value, "default")


def _sa_deprecated(value: Any, ctx: Context) -> bool:
    # Conversion to v1 copies serviceAccountName into the deprecated serviceAccount.
    return _equals_sibling("serviceAccountName")(value, ctx)


def _host_port(value: Any, ctx: Context) -> bool:
    # <podspec>.containers.N.ports.M.hostPort: with hostNetwork the host port is the container port.
    pod_spec = ctx.path[:-5]
    return ctx.live_at((*pod_spec, "hostNetwork")) is True and _equals_sibling("containerPort")(value, ctx)


def _requests_from_limits(value: Any, ctx: Context) -> bool:
    # Pods copy each limit into a missing request of the same resource.
    limit = ctx.live_at((*ctx.path[:-2], "limits", ctx.path[-1]))
    return limit is not None and (same_value(value, limit) or same_quantity(value, limit))


TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105 - a path, not a secret
_TOKEN_VOLUME_NAME = re.compile(r"kube-api-access-[a-z0-9]{5}")


def token_volume(name: str) -> dict[str, Any]:
    """The projected volume the ServiceAccount admission plugin adds to Pods (v1.22+)."""
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                "path": "namespace",
                            }
                        ]
                    }
                },
            ],
        },
    }


def _is_token_volume(value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    name = value.get("name")
    return (
        isinstance(name, str)
        and _TOKEN_VOLUME_NAME.fullmatch(name) is not None
        and same_value(value, token_volume(name))
    )


def _automount(ctx: Context, pod_spec: Path) -> bool:
    # A Pod that opts out of the token must not gain it through an added volume.
    return ctx.live_at((*pod_spec, "automountServiceAccountToken")) is not False


def _token_volume_check(value: Any, ctx: Context) -> bool:
    return _is_token_volume(value) and _automount(ctx, ctx.path[:-2])


def _token_mount_check(value: Any, ctx: Context) -> bool:
    # spec.<containers>.N.volumeMounts.M
    pod_spec = ctx.path[:-4]
    if not isinstance(value, Mapping) or not _automount(ctx, pod_spec):
        return False
    name = value.get("name")
    expected = {"name": name, "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}
    if not isinstance(name, str) or not same_value(value, expected):
        return False
    volumes = ctx.live_at((*pod_spec, "volumes"))
    return isinstance(volumes, list) and any(_is_token_volume(v) and v.get("name") == name for v in volumes)


NOT_READY_TOLERATION = {
    "effect": "NoExecute",
    "key": "node.kubernetes.io/not-ready",
    "operator": "Exists",
    "tolerationSeconds": 300,
}
UNREACHABLE_TOLERATION = {
    "effect": "NoExecute",
    "key": "node.kubernetes.io/unreachable",
    "operator": "Exists",
    "tolerationSeconds": 300,
}


def _scheduled_node(value: Any, ctx: Context) -> bool:
    # The binding that sets nodeName also records PodScheduled=True. On create the
    # server resets status before admission, so a creator-chosen node never passes.
    conditions = ctx.live_at(("status", "conditions"))
    scheduled = isinstance(conditions, list) and any(
        isinstance(c, Mapping) and c.get("type") == "PodScheduled" and c.get("status") == "True"
        for c in conditions
    )
    return scheduled and isinstance(value, str) and bool(value)


def _provisioned_volume(value: Any, ctx: Context) -> bool:
    # Dynamic provisioning names the volume "pvc-<claim uid>"; the uid is assigned
    # by the server, so no creator can pre-bind the claim to a chosen volume this way.
    uid = ctx.live_at(("metadata", "uid"))
    return isinstance(uid, str) and bool(uid) and same_value(value, f"pvc-{uid}")


RESIZE_POLICIES = (
    {"resourceName": "cpu", "restartPolicy": "NotRequired"},
    {"resourceName": "memory", "restartPolicy": "NotRequired"},
)


def _ip_address(value: Any, _ctx: Context) -> bool:
    # Not "None": a headless Service is a choice the signer must make.
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return isinstance(value, str)


def _route_host(value: Any, ctx: Context) -> bool:
    # Only the host the router generates; any other host could claim someone else's name.
    name = ctx.live_at(("metadata", "name"))
    namespace = ctx.live_at(("metadata", "namespace"))
    if not (isinstance(value, str) and isinstance(name, str) and isinstance(namespace, str)):
        return False
    prefix = f"{name}-{namespace}."
    return value.startswith(prefix) and len(value) > len(prefix)


def _any_string(value: Any, _ctx: Context) -> bool:
    return isinstance(value, str)


def _any_int(value: Any, _ctx: Context) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- pod specs ------------------------------------------------------------------

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_VOLUME_SOURCES_WITH_MODE = ("configMap", "secret", "downwardAPI", "projected")


def _pod_spec(prefix: str, *, pod: bool) -> list[Default]:
    """Defaults of a PodSpec at ``prefix`` (``spec`` of a Pod, ``spec.template.spec`` of a Deployment)."""
    s = prefix + "."
    out = [
        exact(s + "dnsPolicy", "ClusterFirst"),
        exact(s + "restartPolicy", "Always"),
        exact(s + "schedulerName", "default-scheduler"),
        exact(s + "securityContext", {}),
        exact(s + "terminationGracePeriodSeconds", 30),
        computed(s + "serviceAccount", "= serviceAccountName (conversion)", _sa_deprecated),
        computed(
            s + "serviceAccountName",
            "= serviceAccount, or 'default' (ServiceAccount admission)" if pod else "= serviceAccount",
            _pod_sa_name if pod else _sa_name,
        ),
    ]
    for source in _VOLUME_SOURCES_WITH_MODE:
        out.append(exact(f"{s}volumes.*.{source}.defaultMode", 420))
    out += [
        exact(s + "volumes.*.hostPath.type", ""),
        exact(s + "volumes.*.downwardAPI.items.*.fieldRef.apiVersion", "v1"),
        exact(s + "volumes.*.downwardAPI.items.*.resourceFieldRef.divisor", "0"),
        exact(s + "volumes.*.projected.sources.*.downwardAPI.items.*.fieldRef.apiVersion", "v1"),
        exact(s + "volumes.*.projected.sources.*.downwardAPI.items.*.resourceFieldRef.divisor", "0"),
        exact(s + "volumes.*.ephemeral.volumeClaimTemplate.spec.volumeMode", "Filesystem"),
        exact(s + "volumes.*.iscsi.iscsiInterface", "default"),
        exact(s + "volumes.*.rbd.pool", "rbd"),
        exact(s + "volumes.*.rbd.user", "admin"),
        exact(s + "volumes.*.rbd.keyring", "/etc/ceph/keyring"),
        exact(s + "volumes.*.azureDisk.cachingMode", "ReadWrite"),
        exact(s + "volumes.*.azureDisk.kind", "Shared"),
        exact(s + "volumes.*.azureDisk.fsType", "ext4"),
        exact(s + "volumes.*.azureDisk.readOnly", False),
        exact(s + "volumes.*.scaleIO.storageMode", "ThinProvisioned"),
        exact(s + "volumes.*.scaleIO.fsType", "xfs"),
        exact(s + "volumes.*.projected.sources.*.serviceAccountToken.expirationSeconds", 3600),
        # A volume that names no source becomes an emptyDir; a second source would not validate.
        exact(s + "volumes.*.emptyDir", {}),
    ]
    for lst in _CONTAINER_LISTS:
        c = f"{s}{lst}.*."
        out += [
            exact(c + "terminationMessagePath", "/dev/termination-log"),
            exact(c + "terminationMessagePolicy", "File"),
            computed(
                c + "imagePullPolicy",
                "Always for :latest or untagged images, else IfNotPresent",
                _pull_policy,
            ),
            exact(c + "resources", {}),
            exact(c + "ports.*.protocol", "TCP"),
            computed(c + "ports.*.hostPort", "= containerPort when hostNetwork is true", _host_port),
            exact(c + "env.*.valueFrom.fieldRef.apiVersion", "v1"),
            exact(c + "env.*.valueFrom.resourceFieldRef.divisor", "0"),
        ]
        for hook in ("postStart", "preStop"):
            out += [
                exact(f"{c}lifecycle.{hook}.httpGet.path", "/"),
                exact(f"{c}lifecycle.{hook}.httpGet.scheme", "HTTP"),
            ]
        for probe in _PROBES:
            out += [
                exact(f"{c}{probe}.timeoutSeconds", 1),
                exact(f"{c}{probe}.periodSeconds", 10),
                exact(f"{c}{probe}.successThreshold", 1),
                exact(f"{c}{probe}.failureThreshold", 3),
                exact(f"{c}{probe}.httpGet.path", "/"),
                exact(f"{c}{probe}.httpGet.scheme", "HTTP"),
            ]
        if pod and lst == "containers":
            out += [
                container(c + "resizePolicy", "in-place resize, from v1.33"),
                one_of(c + "resizePolicy.*", *RESIZE_POLICIES),
            ]
        if pod:
            out += [
                container(c + "resources.requests", "limits copied into missing requests"),
                computed(
                    c + "resources.requests.*", "= the limit of the same resource", _requests_from_limits
                ),
                container(c + "volumeMounts", "ServiceAccount token mount"),
                computed(
                    c + "volumeMounts.*",
                    f"the ServiceAccount token mount at {TOKEN_MOUNT_PATH}",
                    _token_mount_check,
                ),
            ]
    if pod:
        out += [
            computed(s + "nodeName", "the scheduler's node, once status shows PodScheduled", _scheduled_node),
            exact(s + "enableServiceLinks", True),
            computed(s + "priority", "any integer (Priority admission, from priorityClassName)", _any_int),
            one_of(s + "preemptionPolicy", "PreemptLowerPriority", "Never", note="Priority admission"),
            container(s + "tolerations", "DefaultTolerationSeconds admission"),
            one_of(s + "tolerations.*", NOT_READY_TOLERATION, UNREACHABLE_TOLERATION),
            container(s + "volumes", "ServiceAccount token volume"),
            computed(
                s + "volumes.*",
                "the kube-api-access-xxxxx projected token volume (ServiceAccount admission)",
                _token_volume_check,
            ),
        ]
    return out


def _pod_quantities(prefix: str) -> list[str]:
    s = prefix + "."
    out = [
        s + "overhead.*",
        s + "resources.limits.*",
        s + "resources.requests.*",
        s + "volumes.*.emptyDir.sizeLimit",
    ]
    out += [
        s + "volumes.*.downwardAPI.items.*.resourceFieldRef.divisor",
        s + "volumes.*.projected.sources.*.downwardAPI.items.*.resourceFieldRef.divisor",
        s + "volumes.*.ephemeral.volumeClaimTemplate.spec.resources.requests.*",
        s + "volumes.*.ephemeral.volumeClaimTemplate.spec.resources.limits.*",
    ]
    for lst in _CONTAINER_LISTS:
        c = f"{s}{lst}.*."
        out += [
            c + "resources.limits.*",
            c + "resources.requests.*",
            c + "env.*.valueFrom.resourceFieldRef.divisor",
        ]
    return out


def _template(prefix: str) -> list[Default]:
    """A PodTemplateSpec at ``prefix``: its metadata may appear (``creationTimestamp: null``)."""
    return [
        container(prefix + ".metadata", "holds creationTimestamp: null"),
        *_pod_spec(prefix + ".spec", pod=False),
    ]


# -- per kind -------------------------------------------------------------------


def _rolling(prefix: str, **values: Any) -> list[Default]:
    out = [container(prefix), exact(prefix + ".type", "RollingUpdate"), container(prefix + ".rollingUpdate")]
    out += [exact(f"{prefix}.rollingUpdate.{k}", v) for k, v in values.items()]
    return out


def _job_backoff(value: Any, ctx: Context) -> bool:
    per_index = ctx.live_at(("spec", "backoffLimitPerIndex")) is not None
    return same_value(value, 2147483647 if per_index else 6)


def _job_completions(value: Any, ctx: Context) -> bool:
    # Completions is defaulted (to 1) only when neither it nor parallelism was given.
    return same_value(value, 1) and ctx.signed_at(("spec", "parallelism")) is None


def _job_replacement(value: Any, ctx: Context) -> bool:
    failure_policy = ctx.live_at(("spec", "podFailurePolicy")) is not None
    return same_value(value, "Failed" if failure_policy else "TerminatingOrFailed")


def _job_labels(value: Any, ctx: Context) -> bool:
    # A Job without labels takes its pod template's labels (defaults.go).
    signed_labels = ctx.signed_at(("metadata", "labels"))
    template = ctx.live_at(("spec", "template", "metadata", "labels", ctx.path[-1]))
    return not signed_labels and template is not None and same_value(value, template)


_UID = _equals_live(("metadata", "uid"))
_NAME = _equals_live(("metadata", "name"))


def _job(prefix: str) -> list[Default]:
    s = prefix + "."
    return [
        computed(s + "backoffLimit", "6 (2147483647 with backoffLimitPerIndex)", _job_backoff),
        computed(s + "completions", "1 when neither completions nor parallelism is signed", _job_completions),
        exact(s + "parallelism", 1),
        exact(s + "completionMode", "NonIndexed"),
        exact(s + "suspend", False),
        exact(s + "manualSelector", False),
        computed(
            s + "podReplacementPolicy", "TerminatingOrFailed (Failed with podFailurePolicy)", _job_replacement
        ),
        exact(s + "podFailurePolicy.rules.*.onPodConditions.*.status", "True"),
        *_template(s + "template"),
    ]


def _job_generated() -> list[Default]:
    """Selector and labels the Job registry generates on create (metadata.uid / metadata.name)."""
    labels = "spec.template.metadata.labels"
    return [
        container("spec.selector", "generated selector"),
        container("spec.selector.matchLabels"),
        computed("spec.selector.matchLabels", "= metadata.uid", _UID, "batch.kubernetes.io/controller-uid"),
        container(labels, "generated labels"),
        computed(labels, "= metadata.uid", _UID, "batch.kubernetes.io/controller-uid"),
        computed(labels, "= metadata.uid", _UID, "controller-uid"),
        computed(labels, "= metadata.name", _NAME, "batch.kubernetes.io/job-name"),
        computed(labels, "= metadata.name", _NAME, "job-name"),
        container("metadata.labels", "copied from the template when the Job has none"),
        computed("metadata.labels.*", "= the template label, when no Job label is signed", _job_labels),
    ]


def _service_type(*types: str) -> Callable[[Context], bool]:
    def check(ctx: Context) -> bool:
        return ctx.live_at(("spec", "type")) in types

    return check


def _when(condition: Callable[[Context], bool], inner: Check) -> Check:
    def check(value: Any, ctx: Context) -> bool:
        return condition(ctx) and inner(value, ctx)

    return check


def _ip_families(value: Any, _ctx: Context) -> bool:
    return (
        isinstance(value, list)
        and 1 <= len(value) <= 2
        and len(set(map(str, value))) == len(value)
        and all(v in ("IPv4", "IPv6") for v in value)
    )


def _ip_family_policy(value: Any, ctx: Context) -> bool:
    headless_without_selector = ctx.live_at(("spec", "clusterIP")) == "None" and not ctx.live_at(
        ("spec", "selector")
    )
    return same_value(value, "SingleStack") or (
        headless_without_selector and same_value(value, "RequireDualStack")
    )


def _cluster_ips(value: Any, ctx: Context) -> bool:
    first = ctx.live_at(("spec", "clusterIP"))
    return (
        isinstance(value, list)
        and 1 <= len(value) <= 2
        and all(isinstance(v, str) for v in value)
        and isinstance(first, str)
        and value[0] == first
    )


def _port_number(value: Any, _ctx: Context) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _policy_types(value: Any, ctx: Context) -> bool:
    expected = ["Ingress", "Egress"] if ctx.live_at(("spec", "egress")) is not None else ["Ingress"]
    return same_value(value, expected)


_NODE_PORTS = _service_type("NodePort", "LoadBalancer")


def _externally_accessible(ctx: Context) -> bool:
    return _NODE_PORTS(ctx) or (
        ctx.live_at(("spec", "type")) == "ClusterIP" and bool(ctx.live_at(("spec", "externalIPs")))
    )


def _client_ip_affinity(ctx: Context) -> bool:
    return bool(ctx.live_at(("spec", "sessionAffinity")) == "ClientIP")


def _health_check_port(value: Any, ctx: Context) -> bool:
    local = ctx.live_at(("spec", "externalTrafficPolicy")) == "Local"
    return local and _service_type("LoadBalancer")(ctx) and _port_number(value, ctx)


def _service() -> list[Default]:
    return [
        exact("spec.type", "ClusterIP"),
        exact("spec.sessionAffinity", "None"),
        computed(
            "spec.internalTrafficPolicy",
            "Cluster (ClusterIP, NodePort, LoadBalancer)",
            _when(
                _service_type("ClusterIP", "NodePort", "LoadBalancer"), lambda v, _c: same_value(v, "Cluster")
            ),
        ),
        exact("spec.ports.*.protocol", "TCP"),
        computed("spec.ports.*.targetPort", "= port", _equals_sibling("port")),
        computed(
            "spec.ports.*.nodePort", "allocated (NodePort, LoadBalancer)", _when(_NODE_PORTS, _port_number)
        ),
        computed("spec.clusterIP", "an IP address allocated by the server", _ip_address),
        computed("spec.clusterIPs", "allocated; the first is spec.clusterIP", _cluster_ips),
        computed("spec.ipFamilies", "IPv4 and/or IPv6, as the cluster allocates", _ip_families),
        computed(
            "spec.ipFamilyPolicy", "SingleStack (RequireDualStack: headless, no selector)", _ip_family_policy
        ),
        computed(
            "spec.externalTrafficPolicy",
            "Cluster (NodePort, LoadBalancer, or with externalIPs)",
            _when(_externally_accessible, lambda v, _c: same_value(v, "Cluster")),
        ),
        computed(
            "spec.allocateLoadBalancerNodePorts",
            "true (LoadBalancer)",
            _when(_service_type("LoadBalancer"), lambda v, _c: v is True),
        ),
        computed(
            "spec.healthCheckNodePort",
            "allocated (LoadBalancer, externalTrafficPolicy Local)",
            _health_check_port,
        ),
        container("spec.sessionAffinityConfig", "with sessionAffinity ClientIP"),
        container("spec.sessionAffinityConfig.clientIP"),
        computed(
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "10800 (sessionAffinity ClientIP)",
            _when(_client_ip_affinity, lambda v, _c: same_value(v, 10800)),
        ),
    ]


_PVC_SPEC = "spec"


def _pvc(prefix: str) -> list[Default]:
    return [
        exact(prefix + ".volumeMode", "Filesystem"),
        computed(
            prefix + ".storageClassName",
            "the default StorageClass (DefaultStorageClass admission)",
            _any_string,
        ),
        computed(prefix + ".volumeName", "pvc-<metadata.uid> (dynamically provisioned)", _provisioned_volume),
    ]


def _pvc_metadata() -> list[Default]:
    a = "metadata.annotations"
    return [
        container("metadata.finalizers", "storage-object-in-use protection"),
        exact("metadata.finalizers.*", "kubernetes.io/pvc-protection"),
        container(a, "binding and provisioning annotations"),
        exact(a, "yes", "pv.kubernetes.io/bind-completed"),
        exact(a, "yes", "pv.kubernetes.io/bound-by-controller"),
        computed(a, "the provisioner name", _any_string, "volume.beta.kubernetes.io/storage-provisioner"),
        computed(a, "the provisioner name", _any_string, "volume.kubernetes.io/storage-provisioner"),
        computed(a, "the node chosen by the scheduler", _any_string, "volume.kubernetes.io/selected-node"),
    ]


def _volume_claim_templates(prefix: str) -> list[Default]:
    t = prefix + ".*."
    return [
        exact(t + "apiVersion", "v1"),
        exact(t + "kind", "PersistentVolumeClaim"),
        container(t + "metadata", "holds creationTimestamp: null"),
        exact(t + "spec.volumeMode", "Filesystem"),
        container(t + "status"),
        exact(t + "status.phase", "Pending"),
    ]


def _namespace() -> list[Default]:
    return [
        container("spec"),
        exact("spec.finalizers", ["kubernetes"]),
        container("metadata.labels", "the name label"),
        computed("metadata.labels", "= metadata.name", _NAME, "kubernetes.io/metadata.name"),
    ]


def _network_policy() -> list[Default]:
    return [
        computed("spec.policyTypes", "[Ingress], plus Egress when spec.egress is set", _policy_types),
        exact("spec.ingress.*.ports.*.protocol", "TCP"),
        exact("spec.egress.*.ports.*.protocol", "TCP"),
    ]


def _hpa() -> list[Default]:
    def rules(direction: str, policies: list[dict[str, Any]], window: int | None) -> list[Default]:
        b = f"spec.behavior.{direction}"
        out = [
            container(b, "when a behavior is signed"),
            exact(b + ".selectPolicy", "Max"),
            exact(b + ".policies", policies),
        ]
        if window is not None:
            out.append(exact(b + ".stabilizationWindowSeconds", window))
        return out

    cpu_80 = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
    return [
        exact("spec.minReplicas", 1),
        exact("spec.metrics", [cpu_80]),
        *rules(
            "scaleUp",
            [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
            0,
        ),
        # The scale-down window stays unset: the controller's command line decides it.
        *rules("scaleDown", [{"type": "Percent", "value": 100, "periodSeconds": 15}], None),
    ]


_PVC_QUANTITIES = ["spec.resources.requests.*", "spec.resources.limits.*"]


@dataclass(frozen=True, slots=True)
class KindDefaults:
    """The defaults and quantity paths of one (group, kind)."""

    group: str
    kind: str
    entries: tuple[Default, ...]
    quantities: tuple[tuple[str, ...], ...] = ()
    # Where the kind embeds a PodSpec ("" for none); only used to print the table compactly.
    pod_spec: str = ""


def _kind(
    group: str, kind: str, entries: Sequence[Default], quantities: Sequence[str] = (), pod_spec: str = ""
) -> KindDefaults:
    return KindDefaults(group, kind, tuple(entries), tuple(tuple(q.split(".")) for q in quantities), pod_spec)


def _workload(
    group: str, kind: str, extra: Sequence[Default], template: str = "spec.template"
) -> KindDefaults:
    spec = template + ".spec"
    return _kind(group, kind, [*extra, *_template(template)], _pod_quantities(spec), spec)


_TABLE: tuple[KindDefaults, ...] = (
    _kind("", "Pod", _pod_spec("spec", pod=True), _pod_quantities("spec"), "spec"),
    _workload(
        "apps",
        "Deployment",
        [
            exact("spec.replicas", 1),
            exact("spec.revisionHistoryLimit", 10),
            exact("spec.progressDeadlineSeconds", 600),
            *_rolling("spec.strategy", maxSurge="25%", maxUnavailable="25%"),
        ],
    ),
    _kind(
        "apps",
        "StatefulSet",
        [
            exact("spec.replicas", 1),
            exact("spec.revisionHistoryLimit", 10),
            exact("spec.podManagementPolicy", "OrderedReady"),
            # maxUnavailable only with the MaxUnavailableStatefulSet feature gate.
            *_rolling("spec.updateStrategy", partition=0, maxUnavailable=1),
            container("spec.persistentVolumeClaimRetentionPolicy"),
            exact("spec.persistentVolumeClaimRetentionPolicy.whenDeleted", "Retain"),
            exact("spec.persistentVolumeClaimRetentionPolicy.whenScaled", "Retain"),
            *_volume_claim_templates("spec.volumeClaimTemplates"),
            *_template("spec.template"),
        ],
        [
            *_pod_quantities("spec.template.spec"),
            "spec.volumeClaimTemplates.*.spec.resources.requests.*",
            "spec.volumeClaimTemplates.*.spec.resources.limits.*",
        ],
        "spec.template.spec",
    ),
    _workload(
        "apps",
        "DaemonSet",
        [
            exact("spec.revisionHistoryLimit", 10),
            *_rolling("spec.updateStrategy", maxSurge=0, maxUnavailable=1),
        ],
    ),
    _workload("apps", "ReplicaSet", [exact("spec.replicas", 1)]),
    _workload("", "ReplicationController", [exact("spec.replicas", 1)]),
    _workload("", "PodTemplate", [], template="template"),
    _kind(
        "batch",
        "Job",
        [*_job("spec"), *_job_generated()],
        _pod_quantities("spec.template.spec"),
        "spec.template.spec",
    ),
    _kind(
        "batch",
        "CronJob",
        [
            exact("spec.concurrencyPolicy", "Allow"),
            exact("spec.suspend", False),
            exact("spec.successfulJobsHistoryLimit", 3),
            exact("spec.failedJobsHistoryLimit", 1),
            container("spec.jobTemplate.metadata", "holds creationTimestamp: null"),
            *_template("spec.jobTemplate.spec.template"),
        ],
        _pod_quantities("spec.jobTemplate.spec.template.spec"),
        "spec.jobTemplate.spec.template.spec",
    ),
    _kind("", "Service", _service()),
    _kind("", "Secret", [exact("type", "Opaque")]),
    _kind("", "Namespace", _namespace()),
    _kind("", "PersistentVolumeClaim", [*_pvc(_PVC_SPEC), *_pvc_metadata()], _PVC_QUANTITIES),
    _kind(
        "networking.k8s.io",
        "Ingress",
        [
            computed(
                "spec.ingressClassName",
                "the default IngressClass (DefaultIngressClass admission)",
                _any_string,
            ),
        ],
    ),
    _kind("networking.k8s.io", "NetworkPolicy", _network_policy()),
    _kind("autoscaling", "HorizontalPodAutoscaler", _hpa()),
    _kind("", "ResourceQuota", [], ["spec.hard.*"]),
    _kind(
        "",
        "LimitRange",
        [],
        [f"spec.limits.*.{k}.*" for k in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")],
    ),
    _kind(
        "route.openshift.io",
        "Route",
        [
            computed("spec.host", "the router's generated <name>-<namespace>.<domain>", _route_host),
            exact("spec.wildcardPolicy", "None"),
            exact("spec.to.weight", 100),
        ],
    ),
)


class _Trie:
    """Exact-length path lookup with ``*`` matching any one segment."""

    __slots__ = ("children", "items")

    def __init__(self) -> None:
        self.children: dict[str, _Trie] = {}
        self.items: list[Any] = []

    def insert(self, path: Sequence[str], item: Any) -> None:
        node = self
        for seg in path:
            node = node.children.setdefault(seg, _Trie())
        node.items.append(item)

    def find(self, path: Sequence[str | int]) -> list[Any]:
        nodes = [self]
        for seg in path:
            key = str(seg)
            nxt: list[_Trie] = []
            for node in nodes:
                if key in node.children:
                    nxt.append(node.children[key])
                if key != "*" and "*" in node.children:
                    nxt.append(node.children["*"])
            if not nxt:
                return []
            nodes = nxt
        return [item for node in nodes for item in node.items]


class DefaultsTable:
    """Lookup of the defaults and quantity paths of one kind (empty for unknown kinds)."""

    __slots__ = ("_defaults", "_quantities", "kind")

    def __init__(self, kind: KindDefaults | None) -> None:
        self.kind = kind
        self._defaults = _Trie()
        self._quantities = _Trie()
        if kind is not None:
            for entry in kind.entries:
                self._defaults.insert(entry.path, entry)
            for q in kind.quantities:
                self._quantities.insert(q, True)

    def defaults_at(self, path: Sequence[str | int]) -> list[Default]:
        return self._defaults.find(path)

    def is_quantity(self, path: Sequence[str | int]) -> bool:
        return bool(self._quantities.find(path))


_BY_KIND: dict[tuple[str, str], KindDefaults] = {(k.group, k.kind): k for k in _TABLE}
_TABLES: dict[tuple[str, str], DefaultsTable] = {}


def table_for(group: str, kind: str) -> DefaultsTable:
    """The defaults of (group, kind); an empty table (strict comparison) for unknown kinds."""
    key = (group, kind)
    table = _TABLES.get(key)
    if table is None:
        table = DefaultsTable(_BY_KIND.get(key))
        if len(_TABLES) < 256 or key in _BY_KIND:
            _TABLES[key] = table
    return table


def known_kinds() -> tuple[KindDefaults, ...]:
    """Every (group, kind) with defaults, in table order."""
    return _TABLE


POD_SPEC_LABEL = "PodSpec"
_QUANTITY_TEXT = "a resource quantity, compared by value"


def _row(group: str, kind: str, path: str, value: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "path": path, "value": value}


def _pod_relative(path: str) -> str:
    # The three container lists share their defaults; print them once.
    for lst in ("initContainers", "ephemeralContainers"):
        if path.startswith(lst + "."):
            return "containers" + path[len(lst) :]
    return path


def describe_table() -> list[dict[str, str]]:
    """The table as rows (group, kind, path, value) for people and programs.

    PodSpec defaults, the same in every workload, are listed once under the
    pseudo-kind ``PodSpec`` (paths relative to the pod spec; Pod-only rows say
    so); each workload lists where its pod spec is.
    """
    rows: list[dict[str, str]] = []
    template_paths = {
        _pod_relative(".".join(e.path[3:]))
        for e in _BY_KIND[("apps", "Deployment")].entries
        if e.path[:3] == ("spec", "template", "spec")
    }
    for kind in _TABLE:
        prefix = tuple(kind.pod_spec.split(".")) if kind.pod_spec else None
        if prefix is not None:
            rows.append(
                _row(kind.group, kind.kind, kind.pod_spec, f"{POD_SPEC_LABEL} defaults, listed below")
            )
        for entry in kind.entries:
            if prefix is None or entry.path[: len(prefix)] != prefix:
                rows.append(_row(kind.group, kind.kind, entry.dotted, entry.description))
        for q in kind.quantities:
            if prefix is None or q[: len(prefix)] != prefix:
                rows.append(_row(kind.group, kind.kind, ".".join(q), _QUANTITY_TEXT))
    seen: set[str] = set()
    pod = _BY_KIND[("", "Pod")]
    for entry in pod.entries:
        rel = _pod_relative(".".join(entry.path[1:]))
        if rel not in seen:
            seen.add(rel)
            note = "" if rel in template_paths else " (Pod only)"
            rows.append(_row("", POD_SPEC_LABEL, rel, entry.description + note))
    for q in pod.quantities:
        rel = _pod_relative(".".join(q[1:]))
        if rel + " quantity" not in seen:
            seen.add(rel + " quantity")
            rows.append(_row("", POD_SPEC_LABEL, rel, _QUANTITY_TEXT))
    return rows

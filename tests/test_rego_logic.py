"""The K8sSignedManifests Rego, branch by branch, on real engines.

The provider here is a *fake*: a function behind the harness's in-process
transport that answers each ProviderRequest with a verdict the test chooses
(built with the real ``Verdict`` model where the shape is valid, hand-made
JSON where the point is a malformed answer). That is how the branches a real
provider never produces (schema breaches, duplicate answers, system errors on
demand) are reached. End-to-end runs against the real provider live in
``test_rego_e2e.py``. Every case runs on regorus (v1 source and the generated
v0 template) and on OPA (v1).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provider.core.verdict import (
    BundleInfo,
    DiffEntry,
    DiffOp,
    ObjectRef,
    Reason,
    Signer,
    SignerKind,
    Verdict,
)
from provider.errors import SourceError
from provider.policy import (
    Constraint,
    EngineKind,
    ExternalData,
    HandlerTransport,
    Operation,
    PolicyEvaluator,
    Template,
    UserInfo,
    Violation,
    admission_review,
    audit_review,
)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIR = ROOT / "rego" / "k8ssignedmanifests"
CURRENT = Template.from_file(TEMPLATE_DIR / "template.yaml")
LEGACY = Template.from_file(TEMPLATE_DIR / "template-v0.yaml")

ENGINES = {
    "regorus-v1": (CURRENT, EngineKind.REGORUS),
    "regorus-v0": (LEGACY, EngineKind.REGORUS),
    "opa-v1": (CURRENT, EngineKind.OPA),
}

CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings", "namespace": "team-a"},
    "data": {"log-level": "info"},
}
NAMESPACE_OBJ = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}

ANNOTATION_BUNDLE = BundleInfo("annotation", "annotations", "sha256:" + "0" * 64)


def verdict(
    reason: Reason = Reason.VERIFIED,
    *,
    signers: tuple[Signer, ...] = (Signer(SignerKind.KEY, "release", 0, fingerprint="ab" * 32),),
    bundle: BundleInfo | None = ANNOTATION_BUNDLE,
    diff: tuple[DiffEntry, ...] = (),
    namespace_bound: bool | None = True,
    message: str = "checked",
) -> dict[str, Any]:
    return Verdict(
        reason=reason,
        message=message,
        object=ObjectRef("v1", "ConfigMap", "settings", "team-a"),
        signers=signers if reason is Reason.VERIFIED else (),
        bundle=bundle,
        diff=diff,
        namespace_bound=namespace_bound,
        ignored_fields=("metadata.annotations",),
    ).to_json()


def items_for(value: Any) -> Callable[[list[str]], dict[str, Any]]:
    """A ProviderResponse body with ``value`` for every key."""
    return lambda keys: {"items": [{"key": k, "value": value} for k in keys]}


class FakeProvider:
    """Answers ProviderRequests from ``respond(keys) -> response``; records each request."""

    def __init__(self, respond: Callable[[list[str]], dict[str, Any]]) -> None:
        self.respond = respond
        self.keys: list[list[str]] = []

    def handle(self, body: bytes) -> bytes:
        request = json.loads(body)
        assert request["apiVersion"] == "externaldata.gatekeeper.sh/v1beta1"
        assert request["kind"] == "ProviderRequest"
        keys = request["request"]["keys"]
        self.keys.append(keys)
        response = {"idempotent": True, **self.respond(keys)}
        return json.dumps(
            {
                "apiVersion": "externaldata.gatekeeper.sh/v1beta1",
                "kind": "ProviderResponse",
                "response": response,
            }
        ).encode()


class Harness:
    def __init__(self, engine: str) -> None:
        self.template, self.kind = ENGINES[engine]
        self.engine = engine

    def run(
        self,
        respond: Callable[[list[str]], dict[str, Any]],
        parameters: dict[str, Any] | None = None,
        *,
        review: dict[str, Any] | None = None,
        constraints: list[Constraint] | None = None,
        audit: bool = False,
    ) -> tuple[list[Violation], FakeProvider]:
        fake = FakeProvider(respond)
        evaluator = PolicyEvaluator(
            self.template, ExternalData(default=HandlerTransport(fake.handle)), engine=self.kind
        )
        constraints = constraints or [constraint(parameters or {})]
        found = evaluator.evaluate(review or admission_review(CM), constraints, audit=audit)
        return found, fake


def constraint(parameters: dict[str, Any], *, name: str = "c", action: str = "deny") -> Constraint:
    return Constraint.from_mapping(
        {
            "kind": "K8sSignedManifests",
            "metadata": {"name": name},
            "spec": {"enforcementAction": action, "parameters": parameters},
        }
    )


def codes(found: list[Violation]) -> list[str]:
    return sorted(v.details["code"] for v in found)


@pytest.fixture(params=sorted(ENGINES))
def h(request: pytest.FixtureRequest) -> Iterator[Harness]:
    yield Harness(request.param)


# -- verified verdicts and the constraint's signer policy ---------------------------------


def test_verified_and_allowed_gives_no_violation(h: Harness) -> None:
    found, fake = h.run(items_for(verdict()), {"signers": [{"key": "release"}]})
    assert found == []
    assert len(fake.keys) == 1 and len(fake.keys[0]) == 1


def test_no_signer_list_allows_any_signer_the_provider_trusts(h: Harness) -> None:
    assert h.run(items_for(verdict()))[0] == []


def test_signer_not_allowed(h: Harness) -> None:
    found, _ = h.run(items_for(verdict()), {"signers": [{"key": "other"}]})
    assert codes(found) == ["SIGNER_NOT_ALLOWED"]
    (v,) = found
    assert v.enforcement_action == "deny"
    assert 'key "release"' in v.msg and "ConfigMap team-a/settings" in v.msg
    assert v.details["signers"] == ['key "release"']


@pytest.mark.parametrize(
    ("rule", "allowed"),
    [
        ({"key": "release", "fingerprint": "AB" * 32}, True),
        ({"key": "release", "fingerprint": "cd" * 32}, False),
        ({"key": "release", "namespaces": ["team-*"]}, True),
        ({"key": "release", "namespaces": ["team-b", "prod-*"]}, False),
        ({"issuer": "https://issuer", "subject": "release"}, False),  # a key is not a keyless identity
    ],
)
def test_key_signer_rules(h: Harness, rule: dict[str, Any], allowed: bool) -> None:
    found, _ = h.run(items_for(verdict()), {"signers": [rule]})
    assert codes(found) == ([] if allowed else ["SIGNER_NOT_ALLOWED"])


KEYLESS = Signer(
    SignerKind.KEYLESS,
    "https://github.com/org/app/.github/workflows/release.yml@refs/tags/v1.2.3",
    1,
    issuer="https://token.actions.githubusercontent.com",
)


@pytest.mark.parametrize(
    ("rule", "allowed"),
    [
        ({"issuer": "https://token.actions.githubusercontent.com", "subject": KEYLESS.name}, True),
        (
            {
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": "https://github.com/org/app/.github/workflows/release.yml@refs/tags/*",
            },
            True,
        ),
        ({"issuer": "https://accounts.google.com", "subject": KEYLESS.name}, False),
        (
            {
                "issuer": "https://token.actions.githubusercontent.com",
                "subject": "https://github.com/org/other/*",
            },
            False,
        ),
        ({"issuer": "https://token.actions.githubusercontent.com"}, False),  # no subject: matches nothing
        ({"key": KEYLESS.name}, False),
    ],
)
def test_keyless_signer_rules(h: Harness, rule: dict[str, Any], allowed: bool) -> None:
    found, _ = h.run(items_for(verdict(signers=(KEYLESS,))), {"signers": [rule]})
    assert codes(found) == ([] if allowed else ["SIGNER_NOT_ALLOWED"])


def test_any_verified_signer_may_satisfy_the_constraint(h: Harness) -> None:
    two = (Signer(SignerKind.KEY, "dev", 0), KEYLESS)
    rules = {"signers": [{"issuer": KEYLESS.issuer, "subject": KEYLESS.name}]}
    assert h.run(items_for(verdict(signers=two)), rules)[0] == []


def test_namespace_limited_signer_does_not_cover_cluster_scoped_objects(h: Harness) -> None:
    review = admission_review(NAMESPACE_OBJ)
    params = {"signers": [{"key": "release", "namespaces": ["*"]}]}
    found, _ = h.run(items_for(verdict(namespace_bound=False)), params, review=review)
    assert codes(found) == ["SIGNER_NOT_ALLOWED"]
    found, _ = h.run(
        items_for(verdict(namespace_bound=False)), {"signers": [{"key": "release"}]}, review=review
    )
    assert found == []


# -- namespace binding and referenced bundles ----------------------------------------------


def test_unbound_namespace_is_denied_by_default(h: Harness) -> None:
    found, _ = h.run(items_for(verdict(namespace_bound=False)))
    assert codes(found) == ["NAMESPACE_UNBOUND"]
    assert "allowUnboundNamespace" in found[0].msg
    assert h.run(items_for(verdict(namespace_bound=False)), {"allowUnboundNamespace": True})[0] == []


def oci(reference: str, resolved: str | None = None) -> BundleInfo:
    return BundleInfo("oci", reference, "sha256:" + "1" * 64, resolved)


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("bundle", "pinned"),
    [
        (oci("registry.example/team/bundles:v1", f"registry.example/team/bundles@{DIGEST}"), False),
        (oci(f"registry.example/team/bundles@{DIGEST}", f"registry.example/team/bundles@{DIGEST}"), True),
        (oci(f"registry.example/team/bundles:v1@{DIGEST}"), True),
        (
            oci(
                f"registry.example/team/bundles@{DIGEST}", "registry.example/team/bundles@sha256:" + "b" * 64
            ),
            False,
        ),
        (BundleInfo("configmap", "k8s://ConfigMap/bundles/app", "sha256:" + "1" * 64), False),
        (BundleInfo("annotation", "annotations", "sha256:" + "1" * 64), True),
    ],
)
def test_require_digest_pinned_bundles(h: Harness, bundle: BundleInfo, pinned: bool) -> None:
    found, _ = h.run(items_for(verdict(bundle=bundle)), {"requireDigestPinnedBundles": True})
    assert codes(found) == ([] if pinned else ["BUNDLE_NOT_PINNED"])
    assert h.run(items_for(verdict(bundle=bundle)))[0] == []


@pytest.mark.parametrize(
    ("bundle", "allowed"),
    [
        (oci(f"registry.example/team/bundles@{DIGEST}"), True),
        (oci("registry.example/team/sub/bundles:v1"), True),
        (oci("registry.example/other/bundles:v1"), False),
        (oci("localhost:5000/bundles:v1", f"localhost:5000/bundles@{DIGEST}"), True),
        (oci("localhost:5000/bundles:v1", f"evil.example/bundles@{DIGEST}"), False),
        (oci("localhost:5000/bundles-extra:v1"), False),
        (BundleInfo("configmap", "k8s://ConfigMap/bundles/app", "sha256:" + "1" * 64), True),
        (BundleInfo("configmap", "k8s://ConfigMap/other/app", "sha256:" + "1" * 64), False),
        (BundleInfo("annotation", "annotations", "sha256:" + "1" * 64), True),
    ],
)
def test_allowed_bundle_repositories(h: Harness, bundle: BundleInfo, allowed: bool) -> None:
    params = {
        "allowedBundleRepositories": [
            "registry.example/team/*",
            "localhost:5000/bundles",
            "k8s://ConfigMap/bundles/*",
        ]
    }
    found, _ = h.run(items_for(verdict(bundle=bundle)), params)
    assert codes(found) == ([] if allowed else ["BUNDLE_REPOSITORY_NOT_ALLOWED"])


# -- verdicts that are not verified ----------------------------------------------------------


@pytest.mark.parametrize("reason", [r for r in Reason if r is not Reason.VERIFIED])
def test_every_unverified_reason_denies_with_its_code(h: Harness, reason: Reason) -> None:
    diff = tuple(DiffEntry(f"data.k{i}", DiffOp.CHANGED, "a", "b") for i in range(7))
    v = verdict(
        reason, diff=diff if reason is Reason.MANIFEST_MISMATCH else (), message="what the provider saw"
    )
    found, _ = h.run(items_for(v), {"failurePolicy": "Ignore"})
    assert codes(found) == [reason.value]
    (finding,) = found
    assert finding.msg.startswith(f"[{reason.value}] ConfigMap team-a/settings: what the provider saw. ")
    assert "upgrade the template" not in finding.msg.lower()
    if reason is Reason.MANIFEST_MISMATCH:
        assert finding.details["diff"] == [f"data.k{i}" for i in range(5)]
        assert "data.k0, data.k1" in finding.msg and "data.k5" not in finding.msg


def test_unknown_reason_from_a_newer_provider_denies(h: Harness) -> None:
    v = verdict(Reason.BAD_SIGNATURE)
    v["reason"] = "SOMETHING_NEW"
    found, _ = h.run(items_for(v))
    assert codes(found) == ["SOMETHING_NEW"]
    assert "upgrade the template" in found[0].msg.lower()


# -- malformed verdicts: anything missing or unexpected denies -----------------------------------


FIELDS = [
    "schema",
    "verified",
    "reason",
    "message",
    "object",
    "signers",
    "bundle",
    "diff",
    "namespaceBound",
    "ignoredFields",
]


@pytest.mark.parametrize("field", FIELDS)
def test_a_missing_field_denies(h: Harness, field: str) -> None:
    v = verdict()
    del v[field]
    found, _ = h.run(items_for(v), {"failurePolicy": "Ignore"})
    assert codes(found) == ["MALFORMED_VERDICT"]
    assert f'field "{field}" is missing' in found[0].msg


def _mutated(**changes: Any) -> dict[str, Any]:
    v = verdict()
    v.update(changes)
    return v


@pytest.mark.parametrize(
    "answer",
    [
        _mutated(extra=True),
        _mutated(schema=2),
        _mutated(schema="1"),
        _mutated(verified="true"),
        _mutated(verified=1),
        _mutated(reason="BAD_SIGNATURE"),
        _mutated(signers=[]),
        _mutated(signers=[{"kind": "key", "name": "release"}]),
        _mutated(signers=[{"kind": "password", "name": "release", "index": 0}]),
        _mutated(signers=[{"kind": "keyless", "name": "x", "index": 0}]),
        _mutated(signers="release"),
        _mutated(diff=[{"path": "data.k", "op": "changed", "signed": "a", "actual": "b"}]),
        _mutated(bundle=None),
        _mutated(bundle={"source": "oci", "reference": "r"}),
        _mutated(bundle={"source": "oci", "reference": "r", "digest": "d", "resolved": 5}),
        _mutated(namespaceBound=None),
        _mutated(namespaceBound="yes"),
        _mutated(ignoredFields={}),
        _mutated(message=None),
        "VERIFIED",
        None,
        [verdict()],
        True,
    ],
    ids=lambda a: json.dumps(a)[:60],
)
def test_malformed_verdicts_deny_even_with_failure_policy_ignore(h: Harness, answer: Any) -> None:
    found, _ = h.run(items_for(answer), {"failurePolicy": "Ignore"})
    assert "MALFORMED_VERDICT" in codes(found), found
    assert all(v.details["code"] == "MALFORMED_VERDICT" for v in found)


def test_two_answers_for_one_key_deny(h: Harness) -> None:
    def twice(keys: list[str]) -> dict[str, Any]:
        return {"items": [{"key": k, "value": verdict()} for k in keys for _ in range(2)]}

    for policy in ("Fail", "Ignore"):
        found, _ = h.run(twice, {"failurePolicy": policy})
        assert codes(found) == ["MALFORMED_VERDICT"]


# -- provider failures and failurePolicy ---------------------------------------------------------


def _system_error(keys: list[str]) -> dict[str, Any]:
    return {"systemError": "deadline of 2500 ms exceeded"}


def _key_error(keys: list[str]) -> dict[str, Any]:
    return {"items": [{"key": k, "error": "key is not valid JSON"} for k in keys]}


def _other_key(keys: list[str]) -> dict[str, Any]:
    return {"items": [{"key": "something else", "value": verdict()}]}


def _unreachable(keys: list[str]) -> dict[str, Any]:
    raise SourceError("connection refused")


@pytest.mark.parametrize(
    ("respond", "code"),
    [
        (_system_error, "PROVIDER_SYSTEM_ERROR"),
        (_key_error, "PROVIDER_KEY_ERROR"),
        (_other_key, "PROVIDER_NO_ANSWER"),
        (_unreachable, "PROVIDER_UNREACHABLE"),
    ],
)
def test_provider_failures_follow_failure_policy(
    h: Harness, respond: Callable[[list[str]], dict[str, Any]], code: str
) -> None:
    found, _ = h.run(respond)
    assert codes(found) == [code]
    assert "failurePolicy Ignore" in found[0].msg
    found, _ = h.run(respond, {"failurePolicy": "Fail"})
    assert codes(found) == [code]
    assert h.run(respond, {"failurePolicy": "Ignore"})[0] == []


def test_unknown_provider_name_is_a_failure(h: Harness) -> None:
    fake = FakeProvider(items_for(verdict()))
    data = ExternalData({"manifest-provider": HandlerTransport(fake.handle)})
    evaluator = PolicyEvaluator(h.template, data, engine=h.kind)
    found = evaluator.evaluate(admission_review(CM), [constraint({"provider": "elsewhere"})])
    assert codes(found) == ["PROVIDER_UNREACHABLE"]
    assert fake.keys == []
    assert evaluator.evaluate(admission_review(CM), [constraint({})]) == []


def test_undefined_external_data_denies_on_opa() -> None:
    """Newer Gatekeeper makes external_data undefined when the call fails (builtin errors are not strict).

    Only OPA can replace a builtin with ``with``; the template must deny, not fall through.
    """
    from opa_bindings import OpaEngine

    engine = OpaEngine()
    engine.register_function("external_data", lambda request: {"responses": [], "errors": []}, arity=1)
    engine.add_policy("src.rego", CURRENT.rego)
    engine.add_policy("mock.rego", "package mock\n\nnothing(_) := x if {\n  x := 1\n  false\n}\n")
    rego_input = {"review": admission_review(CM), "parameters": {}}
    rows = engine.eval_query(
        "v := data.k8ssignedmanifests.violation with external_data as data.mock.nothing", rego_input
    )
    assert [r["details"]["code"] for r in rows[0]["v"]] == ["PROVIDER_UNREACHABLE"]
    rego_input["parameters"] = {"failurePolicy": "Ignore"}
    rows = engine.eval_query(
        "v := data.k8ssignedmanifests.violation with external_data as data.mock.nothing", rego_input
    )
    assert rows[0]["v"] == []


# -- operations, audit, dry run, exemptions ------------------------------------------------------

DENY_ALL = items_for(verdict(Reason.NO_SIGNATURE))


def test_delete_and_connect_are_allowed_without_asking(h: Harness) -> None:
    for op in (Operation.DELETE, Operation.CONNECT):
        found, fake = h.run(DENY_ALL, review=admission_review(CM, operation=op))
        assert found == [] and fake.keys == []


def test_update_verifies_the_new_object(h: Harness) -> None:
    old = copy.deepcopy(CM)
    new = copy.deepcopy(CM)
    new["data"]["log-level"] = "debug"

    def by_content(keys: list[str]) -> dict[str, Any]:
        out = []
        for k in keys:
            level = json.loads(k)["object"]["data"]["log-level"]
            out.append(
                {"key": k, "value": verdict() if level == "info" else verdict(Reason.MANIFEST_MISMATCH)}
            )
        return {"items": out}

    found, fake = h.run(by_content, review=admission_review(new, operation=Operation.UPDATE, old_object=old))
    assert codes(found) == ["MANIFEST_MISMATCH"]
    assert [json.loads(k)["object"]["data"] for k in fake.keys[0]] == [{"log-level": "debug"}]
    found, _ = h.run(by_content, review=admission_review(old, operation=Operation.UPDATE, old_object=new))
    assert found == []


def test_dry_run_is_verified_like_any_request(h: Harness) -> None:
    found, _ = h.run(DENY_ALL, review=admission_review(CM, dry_run=True))
    assert codes(found) == ["NO_SIGNATURE"]


def test_a_review_without_object_denies(h: Harness) -> None:
    review = admission_review(CM)
    review["object"] = None
    found, fake = h.run(DENY_ALL, review=review)
    assert codes(found) == ["NO_OBJECT"] and fake.keys == []


EXEMPTIONS = {
    "exemptUsers": ["deployer"],
    "exemptGroups": ["system:nodes"],
    "exemptServiceAccounts": ["kube-system/*", "flux-system/kustomize-controller"],
}


@pytest.mark.parametrize(
    ("user", "exempt"),
    [
        (UserInfo("deployer"), True),
        (UserInfo("someone", ("system:nodes",)), True),
        (UserInfo("system:serviceaccount:kube-system:replicaset-controller"), True),
        (UserInfo("system:serviceaccount:flux-system:kustomize-controller"), True),
        (UserInfo("system:serviceaccount:flux-system:helm-controller"), False),
        (UserInfo("system:serviceaccount:kube-system-2:x"), False),
        (UserInfo("deployer2", ("system:authenticated",)), False),
    ],
)
def test_exemptions_apply_to_admission(h: Harness, user: UserInfo, exempt: bool) -> None:
    found, fake = h.run(DENY_ALL, EXEMPTIONS, review=admission_review(CM, user=user))
    assert codes(found) == ([] if exempt else ["NO_SIGNATURE"])
    assert (fake.keys == []) is exempt


def test_audit_has_no_user_so_exemptions_do_not_apply(h: Harness) -> None:
    review = audit_review(CM)
    assert "userInfo" not in review and "operation" not in review
    found, fake = h.run(DENY_ALL, EXEMPTIONS, review=review, audit=True)
    assert codes(found) == ["NO_SIGNATURE"]
    assert len(fake.keys) == 1
    assert h.run(items_for(verdict()), EXEMPTIONS, review=review, audit=True)[0] == []


# -- the key: one call per object, stable across writes -----------------------------------------


LIVE = {
    **CM,
    "metadata": {
        **CM["metadata"],
        "uid": "5c3a0c4e-0000-4000-8000-000000000001",
        "resourceVersion": "48211",
        "generation": 3,
        "creationTimestamp": "2026-11-24T10:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
        "labels": {"app": "x"},
    },
    "status": {"observedGeneration": 3},
}


def test_key_drops_what_changes_on_every_write(h: Harness) -> None:
    _, fake = h.run(items_for(verdict()), review=audit_review(LIVE))
    (key,) = fake.keys[0]
    envelope = json.loads(key)
    assert set(envelope) == {"object", "namespace"}
    assert envelope["namespace"] == "team-a"
    assert "status" not in envelope["object"]
    assert envelope["object"]["metadata"] == {
        "name": "settings",
        "namespace": "team-a",
        "labels": {"app": "x"},
    }
    rewritten = copy.deepcopy(LIVE)
    rewritten["metadata"].update(resourceVersion="99999", generation=4, uid="other")
    rewritten["status"] = {"observedGeneration": 4}
    _, again = h.run(items_for(verdict()), review=admission_review(rewritten, operation=Operation.UPDATE))
    assert again.keys[0] == [key]
    assert key == json.dumps(envelope, separators=(",", ":"), sort_keys=True)


def test_ignore_fields_travel_inside_the_key(h: Harness) -> None:
    rules = [{"fields": ["data.log-level"], "objects": [{"kind": "ConfigMap"}]}]
    _, fake = h.run(items_for(verdict()), {"ignoreFields": rules})
    assert json.loads(fake.keys[0][0])["ignoreFields"] == rules
    _, fake = h.run(items_for(verdict()), {"ignoreFields": []})
    assert "ignoreFields" not in json.loads(fake.keys[0][0])


def test_two_constraints_with_different_parameters(h: Harness) -> None:
    by_release = constraint({"signers": [{"key": "release"}]}, name="release-only")
    by_dev = constraint(
        {"signers": [{"key": "dev"}], "ignoreFields": [{"fields": ["data.*"]}]},
        name="dev-only",
        action="warn",
    )
    found, fake = h.run(items_for(verdict()), constraints=[by_release, by_dev])
    assert [(v.constraint_name, v.enforcement_action, v.details["code"]) for v in found] == [
        ("dev-only", "warn", "SIGNER_NOT_ALLOWED")
    ]
    # One call per constraint; the ignore rules make the second key different.
    assert len(fake.keys) == 2 and fake.keys[0] != fake.keys[1]


def test_engines_agree_on_the_same_inputs() -> None:
    cases: list[tuple[Callable[[list[str]], dict[str, Any]], dict[str, Any]]] = [
        (items_for(verdict()), {"signers": [{"key": "other"}]}),
        (
            items_for(
                verdict(Reason.MANIFEST_MISMATCH, diff=(DiffEntry("data.x", DiffOp.ADDED, None, "1"),))
            ),
            {},
        ),
        (items_for(_mutated(schema=2, extra=1)), {}),
        (_system_error, {}),
        (
            items_for(verdict(namespace_bound=False, bundle=oci("r.example/b:v1"))),
            {"requireDigestPinnedBundles": True},
        ),
    ]
    for respond, params in cases:
        results = {
            name: [
                (v.msg, json.dumps(v.details, sort_keys=True)) for v in Harness(name).run(respond, params)[0]
            ]
            for name in ENGINES
        }
        assert len({json.dumps(r) for r in results.values()}) == 1, results
        assert results["opa-v1"], params


ODD = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "odd", "namespace": "team-a", "labels": {"b": "2", "a": "1"}},
    "data": {"unicode": "café ☕", "quote": 'say "hi"\n', "z": "last", "a": "first"},
    "binaryData": {},
    "immutable": False,
}


def _keys_per_engine(obj: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name in ENGINES:
        _, fake = Harness(name).run(items_for(verdict()), review=admission_review(obj))
        out[name] = fake.keys[0][0]
    return out


def test_engines_build_byte_identical_keys() -> None:
    keys = _keys_per_engine(ODD)
    assert len(set(keys.values())) == 1, keys
    (key,) = set(keys.values())
    assert json.loads(key) == {"object": ODD, "namespace": "team-a"}


def test_opa_escapes_html_characters_in_keys_and_regorus_does_not() -> None:
    """Documented in docs/policy.md: the key text differs, the envelope it encodes does not."""
    obj = copy.deepcopy(ODD)
    obj["data"] = {"html": "<b>&</b>"}
    keys = _keys_per_engine(obj)
    assert "\\u003cb\\u003e\\u0026" in keys["opa-v1"]
    assert "<b>&</b>" in keys["regorus-v1"]
    assert len({json.dumps(json.loads(k), sort_keys=True) for k in keys.values()}) == 1


def test_non_string_keys_fail_like_a_transport_error() -> None:
    data = ExternalData(default=HandlerTransport(FakeProvider(items_for(verdict())).handle))
    answer = data({"provider": "manifest-provider", "keys": [{"object": {}}]})
    assert answer["responses"] is None and answer["errors"] is None
    assert answer["status_code"] == 500 and answer["system_error"]


# -- hostile parameters and answers: never an accidental admit ------------------------------------


@pytest.mark.parametrize(
    ("params", "answer"),
    [
        ({"signers": "release"}, verdict()),
        ({"signers": [{"key": ["release"]}]}, verdict()),
        ({"signers": [{"key": "release", "namespaces": "team-a"}]}, verdict()),
        ({"signers": [{"issuer": None, "subject": None}]}, verdict(signers=(KEYLESS,))),
        ({"exemptUsers": "kubernetes-admin"}, verdict(Reason.NO_SIGNATURE)),
        ({"exemptGroups": {"system:masters": True}}, verdict(Reason.NO_SIGNATURE)),
        ({"exemptServiceAccounts": ["kube-system"]}, verdict(Reason.NO_SIGNATURE)),
        ({"failurePolicy": "ignore"}, None),
        ({"failurePolicy": True}, None),
        ({"allowUnboundNamespace": "true"}, verdict(namespace_bound=False)),
        ({"requireDigestPinnedBundles": "yes"}, verdict(bundle=oci("r.example/b:v1"))),
        ({"allowedBundleRepositories": "r.example/*"}, verdict(bundle=oci("evil.example/b:v1"))),
    ],
    ids=lambda v: json.dumps(v)[:50],
)
def test_wrongly_typed_parameters_never_admit(h: Harness, params: dict[str, Any], answer: Any) -> None:
    """Gatekeeper's schema rejects these; if one slipped through, the object is still not admitted."""
    respond = _system_error if answer is None else items_for(answer)
    found, _ = h.run(respond, params)
    assert found, params


@pytest.mark.parametrize(
    "response",
    [
        {"items": "nope"},
        {"items": [None, 3, "x", []]},
        {"items": [{"key": None, "value": verdict()}]},
        {"items": [{"value": verdict()}]},
        {"items": [{"key": 5, "value": verdict()}]},
        {"systemError": 42},
        {},
    ],
    ids=lambda v: json.dumps(v)[:50],
)
def test_garbled_provider_responses_deny(h: Harness, response: dict[str, Any]) -> None:
    found, _ = h.run(lambda keys: response)
    assert codes(found) == ["PROVIDER_NO_ANSWER"], found


def test_a_non_json_answer_is_a_transport_failure() -> None:
    data = ExternalData(default=HandlerTransport(lambda body: b"<html>502 Bad Gateway</html>"))
    answer = data({"provider": "manifest-provider", "keys": ["k"]})
    assert answer["responses"] is None and "unmarshal" in answer["system_error"]

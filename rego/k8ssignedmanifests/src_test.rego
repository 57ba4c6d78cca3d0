# Unit tests for src.rego, runnable with `opa test rego/k8ssignedmanifests/`.
# external_data is replaced with `with`, so no provider is needed; the
# end-to-end tests in tests/test_rego_e2e.py use the real provider.
package k8ssignedmanifests_test

import data.k8ssignedmanifests

config_map := {
  "apiVersion": "v1",
  "kind": "ConfigMap",
  "metadata": {"name": "settings", "namespace": "team-a", "resourceVersion": "7"},
  "data": {"a": "b"},
}

review(op) := {
  "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
  "name": "settings",
  "namespace": "team-a",
  "operation": op,
  "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
  "object": config_map,
}

verified := {
  "schema": 1,
  "verified": true,
  "reason": "VERIFIED",
  "message": "verified",
  "object": null,
  "signers": [{"kind": "key", "name": "release", "index": 0}],
  "bundle": {"source": "annotation", "reference": "annotations", "digest": "sha256:00"},
  "diff": [],
  "namespaceBound": true,
  "ignoredFields": [],
}

answer_with(value, request) := {
  "responses": [[key, value] | some key in request.keys],
  "errors": [],
  "status_code": 200,
  "system_error": "",
}

answer_verified(request) := answer_with(verified, request)

answer_unsigned(request) := answer_with(object.union(verified, {"verified": false, "reason": "NO_SIGNATURE", "signers": []}), request)

answer_missing_field(request) := answer_with(object.remove(verified, {"namespaceBound"}), request)

answer_system_error(_) := {"responses": [], "errors": [], "status_code": 200, "system_error": "deadline exceeded"}

answer_transport_failure(_) := {"responses": null, "errors": null, "status_code": 500, "system_error": "connection refused"}

answer_undefined(_) := x if {
  x := 1
  false
}

codes(violations) := {v.details.code | some v in violations}

test_verified_is_admitted if {
  result := k8ssignedmanifests.violation with input as {"review": review("CREATE"), "parameters": {}}
    with external_data as answer_verified
  count(result) == 0
}

test_signer_not_allowed if {
  result := k8ssignedmanifests.violation with input as {"review": review("CREATE"), "parameters": {"signers": [{"key": "dev"}]}}
    with external_data as answer_verified
  codes(result) == {"SIGNER_NOT_ALLOWED"}
}

test_unsigned_is_denied if {
  result := k8ssignedmanifests.violation with input as {"review": review("UPDATE"), "parameters": {}}
    with external_data as answer_unsigned
  codes(result) == {"NO_SIGNATURE"}
}

test_missing_field_is_malformed_even_when_failures_are_ignored if {
  result := k8ssignedmanifests.violation with input as {"review": review("CREATE"), "parameters": {"failurePolicy": "Ignore"}}
    with external_data as answer_missing_field
  codes(result) == {"MALFORMED_VERDICT"}
}

test_provider_failures_follow_failure_policy if {
  codes(k8ssignedmanifests.violation) == {"PROVIDER_SYSTEM_ERROR"} with input as {"review": review("CREATE"), "parameters": {}}
    with external_data as answer_system_error
  codes(k8ssignedmanifests.violation) == {"PROVIDER_UNREACHABLE"} with input as {"review": review("CREATE"), "parameters": {}}
    with external_data as answer_transport_failure
  codes(k8ssignedmanifests.violation) == {"PROVIDER_UNREACHABLE"} with input as {"review": review("CREATE"), "parameters": {}}
    with external_data as answer_undefined
  count(k8ssignedmanifests.violation) == 0 with input as {"review": review("CREATE"), "parameters": {"failurePolicy": "Ignore"}}
    with external_data as answer_system_error
}

test_delete_is_not_checked if {
  result := k8ssignedmanifests.violation with input as {"review": review("DELETE"), "parameters": {}}
    with external_data as answer_unsigned
  count(result) == 0
}

test_key_drops_volatile_fields if {
  key := k8ssignedmanifests.request_key with input as {"review": review("CREATE"), "parameters": {}}
  envelope := json.unmarshal(key)
  envelope.namespace == "team-a"
  not envelope.object.metadata.resourceVersion
  envelope.object.data == {"a": "b"}
}

test_audit_ignores_exemptions if {
  audit := object.remove(review("CREATE"), {"operation", "userInfo"})
  params := {"exemptUsers": ["alice"]}
  codes(k8ssignedmanifests.violation) == {"NO_SIGNATURE"} with input as {"review": audit, "parameters": params}
    with external_data as answer_unsigned
  count(k8ssignedmanifests.violation) == 0 with input as {"review": review("CREATE"), "parameters": params}
    with external_data as answer_unsigned
}

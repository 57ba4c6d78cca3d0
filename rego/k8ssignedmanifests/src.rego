# K8sSignedManifests: admit an object only when manifest-provider verified it
# against a signed manifest and the signer satisfies this constraint.
#
# Written in Rego v1 syntax without imports: Gatekeeper 3.19+ reads it as
# `version: v1`; rego/build derives the v0 form for older Gatekeeper by adding
# the `future.keywords` imports, so this file stays the one source.
#
# Fail closed: every finding below names a problem, and a last rule denies any
# object that was not positively admitted even if no named finding matched.
package k8ssignedmanifests

# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

violation contains {"msg": finding.msg, "details": finding.details} if {
  needs_verification
  some finding in findings
}

violation contains {"msg": msg, "details": details} if {
  needs_verification
  count(findings) == 0
  not admitted
  msg := sprintf("[NOT_ADMITTED] %s: the provider's answer did not prove the object signed and allowed. Check the provider logs for this object.", [object_text])
  details := {"code": "NOT_ADMITTED", "object": object_identity}
}

# DELETE removes the object (nothing to verify); CONNECT carries no object.
# Every other operation, a missing one (audit) and dry-run requests verify.
skipped_operations := {"DELETE", "CONNECT"}

needs_verification if {
  not skipped_operation
  not exempt
}

# A rule, not `not x in set`: engines disagree on that form when x is undefined.
skipped_operation if input.review.operation in skipped_operations

# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------

params := object.get(input, "parameters", {})

provider_name := object.get(params, "provider", "manifest-provider")

fail_open if object.get(params, "failurePolicy", "Fail") == "Ignore"

allow_unbound_namespace if object.get(params, "allowUnboundNamespace", false) == true

# Permissive settings take effect only when exactly right; restrictive ones
# whenever set to anything but false.
require_digest_pinned if object.get(params, "requireDigestPinnedBundles", false) != false

signer_rules := object.get(params, "signers", [])

allowed_repositories := object.get(params, "allowedBundleRepositories", [])

# ---------------------------------------------------------------------------
# Exemptions (admission only: audit reviews carry no userInfo)
# ---------------------------------------------------------------------------

username := input.review.userInfo.username

exempt if username in object.get(params, "exemptUsers", [])

exempt if {
  some group in input.review.userInfo.groups
  group in object.get(params, "exemptGroups", [])
}

exempt if {
  some entry in object.get(params, "exemptServiceAccounts", [])
  parts := split(entry, "/")
  count(parts) == 2
  service_account_matches(parts[0], parts[1])
}

service_account_matches(ns, name) if {
  name != "*"
  username == concat(":", ["system:serviceaccount", ns, name])
}

service_account_matches(ns, "*") if {
  startswith(username, concat(":", ["system:serviceaccount", ns, ""]))
}

# ---------------------------------------------------------------------------
# The object under review and its cache-stable key
# ---------------------------------------------------------------------------

reviewed := input.review.object

has_object if is_object(reviewed)

review_namespace := ns if {
  ns := input.review.namespace
  is_string(ns)
  ns != ""
} else := ns if {
  ns := reviewed.metadata.namespace
  is_string(ns)
} else := ""

object_identity := {
  "kind": object_kind,
  "namespace": review_namespace,
  "name": object_name,
}

object_kind := kind if {
  kind := input.review.kind.kind
  is_string(kind)
} else := kind if {
  kind := reviewed.kind
  is_string(kind)
} else := ""

object_name := name if {
  name := input.review.name
  is_string(name)
  name != ""
} else := name if {
  name := reviewed.metadata.name
  is_string(name)
  name != ""
} else := concat("", [reviewed.metadata.generateName, "*"]) if {
  is_string(reviewed.metadata.generateName)
} else := "<unnamed>"

object_text := concat(" ", [object_identity.kind, object_identity.name]) if {
  object_identity.namespace == ""
} else := sprintf("%s %s/%s", [object_identity.kind, object_identity.namespace, object_identity.name])

# Fields that change on every write are dropped so the same manifest gives the
# same key across admission and audit, and Gatekeeper's response cache works.
volatile_metadata := {"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"}

stable_object := object.union(
  object.remove(reviewed, {"status", "metadata"}),
  {"metadata": object.remove(reviewed.metadata, volatile_metadata)},
) if {
  is_object(reviewed.metadata)
} else := object.remove(reviewed, {"status"})

envelope_namespace := {"namespace": review_namespace} if review_namespace != "" else := {}

envelope_ignore := {"ignoreFields": params.ignoreFields} if {
  is_array(params.ignoreFields)
  count(params.ignoreFields) > 0
} else := {}

request_key := json.marshal(object.union_n([{"object": stable_object}, envelope_namespace, envelope_ignore]))

# One call per object and constraint; Gatekeeper caches answers by key.
response := external_data({"provider": provider_name, "keys": [request_key]}) if has_object

# ---------------------------------------------------------------------------
# Reading the provider's answer
# ---------------------------------------------------------------------------

pairs(field) := response[field] if is_array(response[field]) else := []

system_error := response.system_error if {
  is_string(response.system_error)
  response.system_error != ""
}

key_errors := [err | some pair in pairs("errors"); pair[0] == request_key; err := pair[1]]

answers := [value | some pair in pairs("responses"); pair[0] == request_key; value := pair[1]]

# Why no usable answer arrived, or undefined when exactly one answer did.
provider_failure := {"code": "PROVIDER_UNREACHABLE", "what": "external_data returned nothing (the provider is unreachable or the call failed)"} if {
  not response
} else := {"code": "PROVIDER_UNREACHABLE", "what": sprintf("Gatekeeper could not reach provider %q: %v", [provider_name, object.get(response, "system_error", "")])} if {
  # Gatekeeper's answer to a transport failure: no responses at all.
  response.responses == null
} else := {"code": "PROVIDER_SYSTEM_ERROR", "what": sprintf("provider %q reported a system error: %s", [provider_name, system_error])} if {
  system_error
} else := {"code": "PROVIDER_KEY_ERROR", "what": sprintf("provider %q could not check this object: %v", [provider_name, key_errors[0]])} if {
  count(key_errors) > 0
} else := {"code": "PROVIDER_NO_ANSWER", "what": sprintf("provider %q answered without a verdict for this object (status %v)", [provider_name, object.get(response, "status_code", "unknown")])} if {
  count(answers) == 0
} else := {"code": "MALFORMED_VERDICT", "what": sprintf("provider %q answered %d verdicts for one object", [provider_name, count(answers)])} if {
  count(answers) > 1
}

verdict := answers[0] if {
  has_object
  not provider_failure
}

# ---------------------------------------------------------------------------
# Verdict schema 1, checked field by field: anything missing or unexpected is
# a malformed verdict, never a pass.
# ---------------------------------------------------------------------------

verdict_fields := {"schema", "verified", "reason", "message", "object", "signers", "bundle", "diff", "namespaceBound", "ignoredFields"}

# The answer as an object; undefined when there is no answer or it is not one.
v := verdict if is_object(verdict)

schema_problems contains "the verdict is not a JSON object" if {
  answer := verdict
  not is_object(answer)
}

schema_problems contains sprintf("field %q is missing", [f]) if {
  is_object(v)
  present := {k | some k, _ in v}
  some f in verdict_fields
  not f in present
}

schema_problems contains sprintf("field %q is unexpected", [f]) if {
  some f, _ in v
  not f in verdict_fields
}

schema_problems contains sprintf("schema is %v, expected 1", [v.schema]) if v.schema != 1

schema_problems contains "verified is not a boolean" if {
  is_object(v)
  not is_boolean(v.verified)
}

schema_problems contains "reason is not a string" if {
  is_object(v)
  not is_string(v.reason)
}

schema_problems contains "message is not a string" if {
  is_object(v)
  not is_string(v.message)
}

schema_problems contains "signers is not a list" if {
  is_object(v)
  not is_array(v.signers)
}

schema_problems contains "diff is not a list" if {
  is_object(v)
  not is_array(v.diff)
}

schema_problems contains "ignoredFields is not a list" if {
  is_object(v)
  not is_array(v.ignoredFields)
}

schema_problems contains "verified and reason disagree" if {
  is_boolean(v.verified)
  is_string(v.reason)
  v.verified != (v.reason == "VERIFIED")
}

schema_problems contains sprintf("signers[%d] is malformed", [i]) if {
  is_array(v.signers)
  some i, s in v.signers
  not well_formed_signer(s)
}

schema_problems contains "a verified verdict names no signer" if {
  v.verified == true
  is_array(v.signers)
  count(v.signers) == 0
}

schema_problems contains "a verified verdict carries a diff" if {
  v.verified == true
  is_array(v.diff)
  count(v.diff) != 0
}

schema_problems contains "a verified verdict has no well-formed bundle" if {
  v.verified == true
  not well_formed_bundle(v.bundle)
}

schema_problems contains "namespaceBound is not a boolean on a verified verdict" if {
  v.verified == true
  not is_boolean(v.namespaceBound)
}

well_formed_signer(s) if {
  is_object(s)
  s.kind == "key"
  is_string(s.name)
  is_number(s.index)
}

well_formed_signer(s) if {
  is_object(s)
  s.kind == "keyless"
  is_string(s.name)
  is_string(s.issuer)
  is_number(s.index)
}

well_formed_bundle(b) if {
  is_object(b)
  is_string(b.source)
  is_string(b.reference)
  is_string(b.digest)
  valid_resolved(object.get(b, "resolved", null))
}

valid_resolved(r) if r == null

valid_resolved(r) if is_string(r)

well_formed if {
  is_object(verdict)
  count(schema_problems) == 0
}

verified if {
  well_formed
  verdict.schema == 1
  verdict.verified == true
  verdict.reason == "VERIFIED"
}

# ---------------------------------------------------------------------------
# Constraint policy on a verified verdict
# ---------------------------------------------------------------------------

signer_allowed if count(signer_rules) == 0

signer_allowed if {
  some s in verdict.signers
  some rule in signer_rules
  signer_matches(s, rule)
  namespace_permitted(rule)
}

signer_matches(s, rule) if {
  s.kind == "key"
  is_string(rule.key)
  rule.key == s.name
  fingerprint_matches(s, rule)
}

signer_matches(s, rule) if {
  s.kind == "keyless"
  is_string(rule.issuer)
  is_string(rule.subject)
  rule.issuer == s.issuer
  pattern_matches(rule.subject, s.name)
}

fingerprint_matches(_, rule) if object.get(rule, "fingerprint", "") == ""

fingerprint_matches(s, rule) if lower(rule.fingerprint) == lower(s.fingerprint)

namespace_permitted(rule) if count(object.get(rule, "namespaces", [])) == 0

namespace_permitted(rule) if {
  review_namespace != ""
  some pattern in rule.namespaces
  pattern_matches(pattern, review_namespace)
}

# "exact" or "prefix*": the only wildcard is a trailing star.
pattern_matches(pattern, value) if pattern == value

pattern_matches(pattern, value) if {
  endswith(pattern, "*")
  startswith(value, trim_suffix(pattern, "*"))
}

namespace_binding_ok if allow_unbound_namespace

namespace_binding_ok if review_namespace == ""

namespace_binding_ok if verdict.namespaceBound == true

referenced_bundle if verdict.bundle.source != "annotation"

bundle_pin_ok if not require_digest_pinned

bundle_pin_ok if not referenced_bundle

bundle_pin_ok if {
  digest := reference_digest(verdict.bundle.reference)
  digest != ""
  resolved_digest_agrees(digest)
}

resolved_digest_agrees(_) if object.get(verdict.bundle, "resolved", null) == null

resolved_digest_agrees(digest) if {
  is_string(verdict.bundle.resolved)
  reference_digest(verdict.bundle.resolved) == digest
}

reference_digest(ref) := parts[1] if {
  parts := split(ref, "@")
  count(parts) == 2
  startswith(parts[1], "sha256:")
} else := ""

# The repository of "registry/path:tag@sha256:..." is "registry/path".
repository(ref) := trim_suffix(without_digest, concat("", [":", tag])) if {
  without_digest := split(ref, "@")[0]
  segments := split(without_digest, "/")
  last := segments[count(segments) - 1]
  contains(last, ":")
  tag := split(last, ":")[1]
} else := split(ref, "@")[0]

bundle_repositories contains repository(verdict.bundle.reference) if is_string(verdict.bundle.reference)

bundle_repositories contains repository(verdict.bundle.resolved) if is_string(verdict.bundle.resolved)

bundle_repository_ok if count(allowed_repositories) == 0

bundle_repository_ok if not referenced_bundle

bundle_repository_ok if {
  count(allowed_repositories) > 0
  referenced_bundle
  every repo in bundle_repositories {
    some pattern in allowed_repositories
    pattern_matches(pattern, repo)
  }
}

admitted if {
  verified
  signer_allowed
  namespace_binding_ok
  bundle_pin_ok
  bundle_repository_ok
}

admitted if {
  provider_failure
  provider_failure.code != "MALFORMED_VERDICT"
  fail_open
}

# ---------------------------------------------------------------------------
# Findings: one per problem, each with a message that says what to do.
# ---------------------------------------------------------------------------

findings contains finding if {
  not has_object
  finding := make_finding("NO_OBJECT", "the review carries no object to verify", "Send the object in the admission request.")
}

findings contains finding if {
  has_object
  failure := provider_failure
  not fail_open
  finding := make_finding(failure.code, failure.what, "Check that the Provider resource, its caBundle and the provider pods are healthy; failurePolicy Ignore admits on such failures.")
}

findings contains finding if {
  provider_failure.code == "MALFORMED_VERDICT"
  fail_open
  finding := make_finding("MALFORMED_VERDICT", provider_failure.what, "Upgrade the template and the provider together.")
}

findings contains finding if {
  count(schema_problems) > 0
  finding := make_finding(
    "MALFORMED_VERDICT",
    sprintf("provider %q answered a verdict this template cannot read: %s", [provider_name, concat("; ", sort(schema_problems))]),
    "Upgrade the template and the provider together.",
  )
}

findings contains finding if {
  well_formed
  not verified
  finding := object.union(
    make_finding(verdict.reason, verdict.message, reason_hint(verdict.reason)),
    {"details": object.union(base_details(verdict.reason), {"diff": diff_paths})},
  )
}

findings contains finding if {
  verified
  not signer_allowed
  finding := make_finding(
    "SIGNER_NOT_ALLOWED",
    sprintf("signed by %s, which this constraint does not allow here", [concat(", ", signer_names)]),
    "Sign with a signer listed in the constraint's signers (and allowed in this namespace), or add the signer to the constraint.",
  )
}

findings contains finding if {
  verified
  not namespace_binding_ok
  finding := make_finding(
    "NAMESPACE_UNBOUND",
    "the signed manifest names no namespace, so it could be applied in any namespace",
    "Set metadata.namespace in the manifest and sign it again, or set allowUnboundNamespace: true.",
  )
}

findings contains finding if {
  verified
  not bundle_pin_ok
  finding := make_finding(
    "BUNDLE_NOT_PINNED",
    sprintf("the signed bundle %q is not pinned by digest", [verdict.bundle.reference]),
    "Reference the bundle as <repository>@sha256:<digest> in the resourceBundleRef annotation.",
  )
}

findings contains finding if {
  verified
  not bundle_repository_ok
  finding := make_finding(
    "BUNDLE_REPOSITORY_NOT_ALLOWED",
    sprintf("the signed bundle comes from %s, not from an allowed repository %v", [concat(", ", sort(bundle_repositories)), allowed_repositories]),
    "Publish the bundle to a repository listed in allowedBundleRepositories.",
  )
}

make_finding(code, what, hint) := {
  "msg": sprintf("[%s] %s: %s. %s", [code, object_text, trim_suffix(what, "."), hint]),
  "details": base_details(code),
}

base_details(code) := {
  "code": code,
  "object": object_identity,
  "provider": provider_name,
  "signers": signer_names,
}

verdict_signers := v.signers if is_array(v.signers) else := []

signer_names := [signer_text(s) | some s in verdict_signers; well_formed_signer(s)]

signer_text(s) := sprintf("key %q", [s.name]) if s.kind == "key" else := sprintf("keyless %q (issuer %q)", [s.name, s.issuer])

diff_paths := [entry.path | some i, entry in v.diff; i < 5; is_string(entry.path)]

reason_hint("NO_SIGNATURE") := "Sign the manifest and apply the signed file, or exclude this object from the constraint's match."

reason_hint("MALFORMED_SIGNATURE") := "The signature annotations are damaged: apply the signed file again unchanged."

reason_hint("LIMIT_EXCEEDED") := "The signature material exceeds the provider's limits: sign smaller bundles or raise the limits."

reason_hint("BAD_SIGNATURE") := "No trusted key verifies the signature: the signed content was altered or the signing key is not trusted by the provider."

reason_hint("UNTRUSTED_SIGNER") := "The keyless signer's identity is not trusted by the provider: sign with a trusted identity or add it to the provider configuration."

reason_hint("REFERENCE_NOT_ALLOWED") := "The resourceBundleRef points where the provider configuration forbids: publish the bundle to an allowed registry."

reason_hint("NOT_IN_BUNDLE") := "The signed bundle holds no manifest for this object: sign a bundle that includes it."

reason_hint(reason) := hint if {
  reason == "MANIFEST_MISMATCH"
  hint := sprintf("Differs from the signed manifest at %s: apply the signed manifest unchanged, sign the change, or add ignoreFields for fields a controller owns.", [concat(", ", diff_paths)])
}

reason_hint(reason) := "This template does not know the reason: upgrade the template and the provider together." if {
  not reason in {"NO_SIGNATURE", "MALFORMED_SIGNATURE", "LIMIT_EXCEEDED", "BAD_SIGNATURE", "UNTRUSTED_SIGNER", "REFERENCE_NOT_ALLOWED", "NOT_IN_BUNDLE", "MANIFEST_MISMATCH"}
}

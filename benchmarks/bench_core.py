"""Cold verification cost of one signed Deployment versus its irreducible work.

Baseline: what any verifier must do at least for a ~2 KB signed Deployment,
namely one libyaml parse of the signed YAML and one ECDSA P-256 verification
of the same bytes. Measured against it:

* ``formats``: decode the annotations (base64, gunzip), verify the signature
  over the RAW bytes, then parse the message within limits;
* ``verifier cold``: ``Verifier.verify`` on a new ``Verifier`` each time (empty
  signature and message caches), the full path an admission request takes on a
  cache miss. What stays warm is process-wide and independent of any object:
  the ignore-pattern transition tables (like compiled regular expressions);
* ``verifier warm``: the same Verifier again (its caches hold the result of
  the signature check and of the parsed message).

Run: ``python -m benchmarks.bench_core`` (prints microseconds per call and the
ratio to the baseline; no assertion on time).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import yaml

from provider.core.annotations import DEFAULT_DOMAIN, bundle_from_annotations
from provider.core.cosignkey import PrivateKey
from provider.core.keys import PublicKey
from provider.core.limits import DEFAULT_LIMITS
from provider.core.message import manifests_from_message
from provider.core.safeyaml import load_documents
from provider.core.signing import sign_documents

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def deployment(containers: int = 3) -> bytes:
    """A realistic Deployment of about 2 KB."""
    parts = [
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: storefront\n  namespace: shop\n"
        "  labels:\n    app.kubernetes.io/name: storefront\n    app.kubernetes.io/part-of: shop\n"
        "spec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: storefront\n"
        "  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: storefront\n"
        "    spec:\n      serviceAccountName: storefront\n      containers:\n"
    ]
    for i in range(containers):
        parts.append(
            f"      - name: app-{i}\n        image: registry.example.com/shop/app-{i}:1.4.{i}\n"
            "        ports:\n        - containerPort: 8080\n          protocol: TCP\n"
            "        env:\n        - name: LOG_LEVEL\n          value: info\n"
            "        - name: CACHE_URL\n          value: redis://cache.shop.svc:6379\n"
            "        resources:\n          requests: {cpu: 100m, memory: 128Mi}\n"
            "          limits: {cpu: 500m, memory: 256Mi}\n"
            "        readinessProbe:\n          httpGet: {path: /healthz, port: 8080}\n"
            "          periodSeconds: 10\n"
        )
    return "".join(parts).encode()


def per_call_us(fn: Callable[[], object], *, min_seconds: float = 0.4, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean microseconds per call."""
    fn()
    calls = 1
    while True:  # calibrate a batch that lasts about min_seconds / repeats
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds / repeats or calls >= 1 << 16:
            break
        calls *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def formats_path(annotations: dict[str, str], key: PublicKey) -> list[dict[str, Any]]:
    """Bytes first, then parse: what the verifier does before matching."""
    bundle = bundle_from_annotations(annotations, domain=DEFAULT_DOMAIN, limits=DEFAULT_LIMITS)
    assert bundle is not None
    if not any(key.verify(s.signature, s.payload) for s in bundle.signature_sets):
        raise RuntimeError("benchmark signature did not verify")
    return manifests_from_message(bundle.message, limits=DEFAULT_LIMITS)


def verifier_factory(key: PublicKey) -> Callable[[], Any] | None:
    """A constructor of fresh Verifiers, or None while the verifier is unavailable."""
    try:
        from provider.core.verifier import TrustPolicy, Verifier
    except ImportError:
        return None
    policy = TrustPolicy(keys=(key,))
    return lambda: Verifier(policy)


def main() -> None:
    key = PrivateKey.generate()
    public = key.public_key(name="bench")
    source = deployment()
    signed = sign_documents(source, key)
    (obj,) = load_documents(signed, limits=DEFAULT_LIMITS)
    annotations = obj["metadata"]["annotations"]
    bundle = bundle_from_annotations(annotations, domain=DEFAULT_DOMAIN, limits=DEFAULT_LIMITS)
    assert bundle is not None
    raw = bundle.message
    signature = bundle.signature_sets[0].signature

    def baseline() -> None:
        yaml.load(raw, Loader=LOADER)
        if not public.verify(signature, raw):
            raise RuntimeError("baseline signature did not verify")

    print(
        f"cpu_count={os.cpu_count()} signed message={len(raw)} bytes, signed object YAML={len(signed)} bytes"
    )
    base = per_call_us(baseline)
    results = [("baseline (libyaml parse + ECDSA P-256 verify)", base)]
    results.append(
        ("formats (decode + verify + bounded parse)", per_call_us(lambda: formats_path(annotations, public)))
    )
    make = verifier_factory(public)
    if make is not None:

        def cold() -> None:
            verdict = make().verify(obj)
            if not verdict.verified:
                raise RuntimeError(f"benchmark object did not verify: {verdict.message}")

        warm_verifier = make()
        results.append(("verifier cold (new Verifier per call)", per_call_us(cold)))
        results.append(("verifier warm (caches hit)", per_call_us(lambda: warm_verifier.verify(obj))))
    else:
        print("provider.core.verifier not importable: measuring the formats path only")
    for label, micros in results:
        print(f"{label:<50} {micros:10.1f} us/call  {micros / base:6.2f}x baseline")


if __name__ == "__main__":
    main()

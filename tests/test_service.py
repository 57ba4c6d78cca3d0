"""The provider service with the real verifier and freshly signed objects.

Resolvers here are small in-process classes standing in for a registry: one
that fails the way a registry outage does (SourceError) and one that blocks
until released (a registry slower than the deadline). Everything else is the
real verifier over objects signed for the test.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import yaml

from provider import wire
from provider.config import Settings, build_verifier, parse_settings
from provider.core.annotations import DEFAULT_DOMAIN, bundle_from_annotations
from provider.core.bundle import BundleResolver, SignedBundle
from provider.core.limits import Limits
from provider.core.signing import sign_documents
from provider.errors import DeadlineExceededError, FormatError, SourceError
from provider.logs import JsonFormatter
from provider.metrics import Metrics
from provider.service import ProviderService, VerdictCache
from tests.keyutil import keypair

REF_ANNOTATION = f"{DEFAULT_DOMAIN}/resourceBundleRef"


# -- helpers shared with the web and reload tests ---------------------------------------


def configmap(name: str = "cm", namespace: str = "ns", data: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data if data is not None else {"greeting": "hello"},
    }


def signed(obj: dict[str, Any], signer: str = "alice") -> dict[str, Any]:
    """``obj`` as it is applied after signing with the test key ``signer``."""
    key, _ = keypair(signer)
    out = yaml.safe_load(sign_documents(yaml.safe_dump(obj).encode(), key))
    assert isinstance(out, dict)
    return out


def tampered(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["data"]["greeting"] = "changed after signing"
    return out


def key_of(obj: dict[str, Any], **kwargs: Any) -> str:
    return wire.encode_key(obj, **kwargs)


def settings_with(*signers: str, config: dict[str, Any] | None = None) -> Settings:
    doc: dict[str, Any] = {"keys": [{"name": s, "pem": keypair(s)[1].decode()} for s in signers]}
    doc.update(config or {})
    return parse_settings(doc)


def make_service(
    settings: Settings,
    resolver: BundleResolver | None = None,
    *,
    metrics: Metrics | None = None,
    clock: Any = time.monotonic,
) -> ProviderService:
    return ProviderService(
        settings, build_verifier(settings, resolver), metrics=metrics or Metrics(), clock=clock
    )


def items_of(answer: wire.Answer) -> list[dict[str, Any]]:
    doc = orjson.loads(answer.to_bytes())
    items: list[dict[str, Any]] = doc["response"]["items"]
    return items


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


class FailingResolver:
    """Fails like a registry that cannot be reached."""

    def __init__(self, error: SourceError | None = None) -> None:
        self.error = error or SourceError("registry.example.com: connection refused")
        self.calls = 0

    def resolve(self, reference: str) -> SignedBundle:
        self.calls += 1
        raise self.error


class BlockingResolver:
    """Answers ``bundle`` for every reference, but only once released."""

    def __init__(self, bundle: SignedBundle) -> None:
        self.bundle = bundle
        self.release = threading.Event()
        self.calls = 0

    def resolve(self, reference: str) -> SignedBundle:
        self.calls += 1
        self.release.wait(10)
        return self.bundle


def referenced(obj: dict[str, Any], reference: str = "registry.example.com/bundles/app:1") -> dict[str, Any]:
    """A signed object that names its bundle by reference (the resolver returns it)."""
    out = copy.deepcopy(obj)
    out["metadata"]["annotations"][REF_ANNOTATION] = reference
    return out


def bundle_of(obj: dict[str, Any]) -> SignedBundle:
    bundle = bundle_from_annotations(obj["metadata"]["annotations"], domain=DEFAULT_DOMAIN, limits=Limits())
    assert bundle is not None
    return bundle


@pytest.fixture(scope="module")
def good() -> dict[str, Any]:
    return signed(configmap())


@pytest.fixture
def service() -> Iterator[ProviderService]:
    svc = make_service(settings_with("alice"))
    yield svc
    svc.close()


# -- tests ------------------------------------------------------------------------------


def test_verified_and_rejected_verdicts(service: ProviderService, good: dict[str, Any]) -> None:
    answer = service.answer([key_of(good), key_of(tampered(good))])
    assert answer.system_error == ""
    ok, bad = items_of(answer)
    assert ok["key"] == key_of(good) and ok["error"] == ""
    assert ok["value"]["schema"] == 1
    assert ok["value"]["verified"] is True and ok["value"]["reason"] == "VERIFIED"
    assert ok["value"]["signers"][0]["name"] == "alice"
    assert bad["value"]["verified"] is False and bad["value"]["reason"] == "MANIFEST_MISMATCH"
    assert bad["value"]["diff"][0]["path"] == "data.greeting"


def test_unknown_signer_and_unsigned(service: ProviderService) -> None:
    by_mallory = signed(configmap(name="m"), signer="mallory")
    unsigned = configmap(name="u")
    items = items_of(service.answer([key_of(by_mallory), key_of(unsigned)]))
    assert [i["value"]["reason"] for i in items] == ["BAD_SIGNATURE", "NO_SIGNATURE"]


def test_namespace_and_ignore_fields_travel_in_the_key(
    service: ProviderService, good: dict[str, Any]
) -> None:
    # The admission namespace fills in for an object that carries none.
    no_ns = copy.deepcopy(good)
    del no_ns["metadata"]["namespace"]
    with_ns, elsewhere = items_of(
        service.answer([key_of(no_ns, namespace="ns"), key_of(no_ns, namespace="x")])
    )
    assert with_ns["value"]["reason"] == "VERIFIED"
    assert elsewhere["value"]["reason"] != "VERIFIED"
    # Constraint-supplied ignore rules change the verdict, so they are part of the key.
    changed = tampered(good)
    strict, lenient = items_of(
        service.answer([key_of(changed), key_of(changed, ignore_fields=[{"fields": ["data.greeting"]}])])
    )
    assert strict["value"]["reason"] == "MANIFEST_MISMATCH"
    assert lenient["value"]["reason"] == "VERIFIED"


def test_one_item_per_distinct_key_and_errors_do_not_hide_others(
    service: ProviderService, good: dict[str, Any]
) -> None:
    big = key_of(configmap(data={"blob": "x" * (service.settings.server.max_key_bytes + 1)}))
    keys = [
        key_of(good),
        "not json",
        key_of(good),
        '{"object": []}',
        big,
        '{"object": {"kind": "ConfigMap"}}',
        "not json",
        key_of(tampered(good)),
    ]
    answer = service.answer(keys)
    assert answer.system_error == ""
    items = items_of(answer)
    assert [i["key"] for i in items] == list(dict.fromkeys(keys))
    by_key = {i["key"]: i for i in items}
    assert by_key[key_of(good)]["value"]["reason"] == "VERIFIED"
    assert by_key[key_of(tampered(good))]["value"]["reason"] == "MANIFEST_MISMATCH"
    assert "not valid JSON" in by_key["not json"]["error"] and by_key["not json"]["value"] is None
    assert "'object' must be a JSON object" in by_key['{"object": []}']["error"]
    assert "server.maxKeyBytes" in by_key[big]["error"]
    # The verifier's own "not an object" finding is an item error too.
    assert "apiVersion" in by_key['{"object": {"kind": "ConfigMap"}}']["error"]
    assert sample(service.metrics, "manifest_provider_key_errors_total") == 4


def test_cache_hits_and_misses_are_counted(good: dict[str, Any]) -> None:
    metrics = Metrics()
    svc = make_service(settings_with("alice"), metrics=metrics)
    key = key_of(good)
    first = svc.answer([key]).to_bytes()
    assert sample(metrics, "manifest_provider_cache_misses_total") == 1
    assert sample(metrics, "manifest_provider_cache_hits_total") == 0
    second = svc.answer([key, key]).to_bytes()
    assert first == second
    assert sample(metrics, "manifest_provider_cache_hits_total") == 1
    assert sample(metrics, "manifest_provider_verdicts_total", {"reason": "VERIFIED"}) == 2
    assert sample(metrics, "manifest_provider_key_check_seconds_count") == 1
    assert sample(metrics, "manifest_provider_keys_per_request_sum") == 3


def test_cache_honours_ttl_and_can_be_disabled(good: dict[str, Any]) -> None:
    now = [1000.0]
    metrics = Metrics()
    settings = settings_with("alice", config={"cache": {"ttlSeconds": 10}})
    svc = make_service(settings, metrics=metrics, clock=lambda: now[0])
    key = key_of(good)
    svc.answer([key])
    now[0] += 5
    svc.answer([key])
    assert sample(metrics, "manifest_provider_cache_hits_total") == 1
    now[0] += 6
    svc.answer([key])
    assert sample(metrics, "manifest_provider_cache_misses_total") == 2

    off = Metrics()
    disabled = make_service(settings_with("alice", config={"cache": {"entries": 0}}), metrics=off)
    disabled.answer([key])
    disabled.answer([key])
    assert sample(off, "manifest_provider_cache_hits_total") == 0
    assert len(disabled.cache) == 0


def test_cache_is_bounded() -> None:
    cache = VerdictCache(2, 60)
    from provider.service import CachedVerdict

    for i in range(5):
        cache.put(("g", bytes([i])), CachedVerdict(b"{}", "VERIFIED", True))
    assert len(cache) == 2


def test_a_new_generation_never_serves_an_old_verdict(good: dict[str, Any]) -> None:
    key = key_of(good)
    trusting_alice = make_service(settings_with("alice"))
    trusting_bob = make_service(settings_with("bob"))
    assert trusting_alice.generation != trusting_bob.generation
    assert items_of(trusting_alice.answer([key]))[0]["value"]["reason"] == "VERIFIED"
    # Even if a cache were shared, its entries are keyed by generation.
    assert trusting_bob.cache.get((trusting_alice.generation, b"")) is None
    assert items_of(trusting_bob.answer([key]))[0]["value"]["reason"] == "BAD_SIGNATURE"


def test_source_error_is_a_system_error_with_no_items(good: dict[str, Any]) -> None:
    resolver = FailingResolver()
    metrics = Metrics()
    svc = make_service(settings_with("alice"), resolver, metrics=metrics)
    answer = svc.answer([key_of(good), key_of(referenced(good)), "not json"])
    assert answer.items == ()
    assert "connection refused" in answer.system_error
    doc = orjson.loads(answer.to_bytes())
    assert doc["response"]["items"] == [] and doc["response"]["idempotent"] is True
    assert sample(metrics, "manifest_provider_system_errors_total", {"kind": "source"}) == 1
    # Nothing transient was cached: the next request tries again.
    svc.answer([key_of(referenced(good))])
    assert resolver.calls == 2
    # A verdict computed in the same request is still cached (it is deterministic).
    assert svc.cache.get((svc.generation, _digest(key_of(good)))) is not None


def test_deadline_exceeded_from_a_source_is_a_deadline_system_error(good: dict[str, Any]) -> None:
    metrics = Metrics()
    svc = make_service(
        settings_with("alice"),
        FailingResolver(DeadlineExceededError("registry took too long")),
        metrics=metrics,
    )
    answer = svc.answer([key_of(referenced(good))])
    assert answer.items == () and "took too long" in answer.system_error
    assert sample(metrics, "manifest_provider_system_errors_total", {"kind": "deadline"}) == 1


def test_internal_deadline_answers_in_time_and_late_results_warm_the_cache(good: dict[str, Any]) -> None:
    settings = settings_with(
        "alice", config={"server": {"providerTimeoutSeconds": 1, "deadlineMilliseconds": 300}}
    )
    resolver = BlockingResolver(bundle_of(good))
    metrics = Metrics()
    svc = make_service(settings, resolver, metrics=metrics)
    try:
        keys = [key_of(referenced(good, f"registry.example.com/b:{i}")) for i in range(3)] + [key_of(good)]
        started = time.monotonic()
        answer = svc.answer(keys)
        elapsed = time.monotonic() - started
        assert answer.items == ()
        assert "300 ms deadline" in answer.system_error
        assert elapsed < 2.0, "the deadline answer must come before Gatekeeper gives up"
        assert sample(metrics, "manifest_provider_system_errors_total", {"kind": "deadline"}) == 1
        # The registry answers late; the checks finish and fill the cache.
        resolver.release.set()
        for _ in range(200):
            if len(svc.cache) == len(keys):
                break
            time.sleep(0.01)
        answer = svc.answer(keys)
        assert answer.system_error == ""
        assert [i["value"]["reason"] for i in items_of(answer)] == ["VERIFIED"] * 4
        assert resolver.calls == 3
    finally:
        resolver.release.set()
        svc.close()


def test_referenced_keys_are_checked_concurrently(good: dict[str, Any]) -> None:
    class SlowResolver:
        def __init__(self) -> None:
            self.active = 0
            self.peak = 0
            self.lock = threading.Lock()

        def resolve(self, reference: str) -> SignedBundle:
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            time.sleep(0.1)
            with self.lock:
                self.active -= 1
            return bundle_of(good)

    resolver = SlowResolver()
    svc = make_service(settings_with("alice"), resolver)
    keys = [key_of(referenced(good, f"registry.example.com/b:{i}")) for i in range(8)]
    started = time.monotonic()
    answer = svc.answer(keys)
    assert answer.system_error == ""
    assert all(i["value"]["reason"] == "VERIFIED" for i in items_of(answer))
    assert resolver.peak > 1
    assert time.monotonic() - started < 0.8 * 8 * 0.1
    svc.close()


def test_handle_turns_bad_requests_into_system_errors(service: ProviderService, good: dict[str, Any]) -> None:
    doc = orjson.loads(service.handle(b"{"))
    assert doc["kind"] == wire.RESPONSE_KIND
    assert doc["response"]["items"] == [] and "not valid JSON" in doc["response"]["systemError"]
    doc = orjson.loads(service.handle(wire.encode_request([key_of(good)])))
    assert doc["response"]["items"][0]["value"]["verified"] is True
    too_many = wire.encode_request(["k"] * (service.settings.server.max_keys_per_request + 1))
    assert "more than the 1000 allowed" in orjson.loads(service.handle(too_many))["response"]["systemError"]
    assert sample(service.metrics, "manifest_provider_system_errors_total", {"kind": "request"}) == 2


def test_unexpected_errors_are_internal_system_errors(good: dict[str, Any]) -> None:
    class Broken:
        def resolve(self, reference: str) -> SignedBundle:
            raise RuntimeError("bug")

    svc = make_service(settings_with("alice"), Broken())
    answer = svc.answer([key_of(referenced(good))])
    assert answer.items == () and answer.system_error == "internal error while checking a key"


def test_one_log_line_per_key_without_the_key_body(
    service: ProviderService, good: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    key = key_of(good)
    with caplog.at_level(logging.INFO, logger="provider.service"):
        service.answer([key, key, "not json"])
        service.answer([key])
    lines = [JsonFormatter().format(r) for r in caplog.records]
    events = [orjson.loads(line) for line in lines]
    keyed = [e for e in events if e.get("event") == "key"]
    assert [(e["decision"], e["cache"]) for e in keyed] == [
        ("error", "none"),
        ("allow", "miss"),
        ("allow", "hit"),
    ]
    assert keyed[1]["reason"] == "VERIFIED" and keyed[1]["key_sha256"] == _digest(key).hex()
    assert isinstance(keyed[1]["duration_ms"], float)
    for line in lines:
        assert "greeting" not in line and "hello" not in line and "not json" not in line


def _digest(key: str) -> bytes:
    import hashlib

    return hashlib.sha256(key.encode()).digest()


def test_content_the_verifier_cannot_take_is_an_item_error(good: dict[str, Any]) -> None:
    """A stand-in verifier: the real one raises FormatError only for rare content, so the seam is driven directly."""

    class Picky:
        def verify(self, obj: Any, *, extra_rules: Any = (), namespace: str | None = None) -> Any:
            raise FormatError("value at data.x cannot be compared")

    svc = ProviderService(settings_with("alice"), Picky(), metrics=Metrics())
    answer = svc.answer([key_of(good)])
    assert answer.system_error == ""
    item = items_of(answer)[0]
    assert item["value"] is None
    assert item["error"] == "object cannot be checked: value at data.x cannot be compared"
    assert len(svc.cache) == 0


def test_concurrent_requests_share_one_service_safely(good: dict[str, Any]) -> None:
    # A small cache forces evictions while threads read and write it.
    metrics = Metrics()
    svc = make_service(settings_with("alice", config={"cache": {"entries": 3}}), metrics=metrics)
    objects = [signed(configmap(name=f"c{i}")) for i in range(6)]
    keys = [key_of(o) for o in objects] + [key_of(tampered(objects[0]))]
    expected = ["VERIFIED"] * 6 + ["MANIFEST_MISMATCH"]
    failures: list[str] = []

    def client(offset: int) -> None:
        for round_ in range(15):
            order = keys[(offset + round_) % len(keys) :] + keys[: (offset + round_) % len(keys)]
            answer = svc.answer(order)
            got = {i["key"]: i["value"]["reason"] for i in items_of(answer)}
            if answer.system_error or got != dict(zip(keys, expected, strict=True)):
                failures.append(f"thread {offset} round {round_}: {answer.system_error or got}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    answered = sample(metrics, "manifest_provider_cache_hits_total") + sample(
        metrics, "manifest_provider_cache_misses_total"
    )
    assert answered == 8 * 15 * len(keys)
    assert len(svc.cache) <= 3


def test_per_key_lines_written_directly_match_the_json_formatter(
    service: ProviderService, good: dict[str, Any]
) -> None:
    """With the JSON stream handler as the only destination, lines skip LogRecord: same fields."""
    import io

    from provider.logs import info_line

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("provider.service")
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        key = key_of(good)
        service.answer([key, key, "not json"])
        service.answer([key])
        service.answer([key])
        fast = stream.getvalue()
        # The same call through an ordinary record, for the reference format.
        stream.seek(0)
        stream.truncate()
        log.addFilter(lambda record: True)  # a filter forces the record path
        info_line(log, "key answered", {"event": "key", "cache": "hit"})
        reference = orjson.loads(stream.getvalue())
    finally:
        log.filters.clear()
        log.handlers[:], log.propagate = saved[0], saved[1]
        log.setLevel(saved[2])
    lines = fast.splitlines()
    events = [orjson.loads(line) for line in lines]
    keyed = [e for e in events if e.get("event") == "key"]
    # One line per answered key (duplicates in one request are answered once).
    assert [(e["decision"], e["cache"]) for e in keyed] == [
        ("error", "none"),
        ("allow", "miss"),
        ("allow", "hit"),
        ("allow", "hit"),
    ]
    hit = keyed[-1]
    assert list(hit) == [
        "time",
        "level",
        "logger",
        "message",
        "event",
        "decision",
        "reason",
        "duration_ms",
        "cache",
        "key_sha256",
    ]
    assert list(reference)[:4] == list(hit)[:4]
    assert (hit["level"], hit["logger"], hit["message"]) == ("INFO", "provider.service", "key answered")
    assert (reference["level"], reference["logger"]) == ("INFO", "provider.service")
    assert hit["time"].endswith("Z") and len(hit["time"]) == len(reference["time"]) == 24
    assert hit["key_sha256"] == _digest(key).hex() and hit["reason"] == "VERIFIED"
    for line in lines:
        assert "greeting" not in line and "hello" not in line and "not json" not in line
        assert key not in line

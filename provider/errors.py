"""The one error hierarchy of manifest-provider.

A *verdict* ("checked, and the object is not what was signed") is a value, see
:mod:`provider.core.verdict`. The errors below mean something else: the input
could not be read, the configuration is wrong, or the answer could not be
computed right now. Every error carries a short, secret-free ``diagnostics()``.

Blame decides the class:

* :class:`FormatError` - bad *content* (signature material, messages, keys).
  The verifier turns these into verdicts (``MALFORMED_SIGNATURE``,
  ``LIMIT_EXCEEDED``) because they are a property of the object under review.
* :class:`SourceError` - a *transport* or remote failure while fetching a
  bundle, key or configuration. May pass on retry: never cached as a verdict.
* :class:`ConfigError` - the operator's configuration is invalid. Raised at
  start-up (or on reload) with every problem listed at once.
* :class:`InputError` - a request or file cannot be a verification request at
  all (not JSON, no object, unreadable file).
"""

from __future__ import annotations

from collections.abc import Iterable


class ManifestProviderError(Exception):
    """Base class of every error raised on purpose by this project."""

    def diagnostics(self) -> str:
        """A one-line, secret-free description fit for logs and answers."""
        return str(self) or self.__class__.__name__


class FormatError(ManifestProviderError):
    """Signature material, a message or a key is malformed."""


class LimitExceededError(FormatError):
    """Content is larger, deeper or more numerous than a configured limit allows."""


class SignatureError(ManifestProviderError):
    """A well-formed signature does not verify (wrong key, tampered bytes)."""


class UntrustedSignerError(SignatureError):
    """A signature verifies cryptographically but its signer is not trusted."""


class KeyMaterialError(FormatError):
    """A public or private key cannot be read, decrypted or used."""


class SourceError(ManifestProviderError):
    """A bundle, key or configuration could not be fetched right now."""


class ReferenceNotAllowedError(ManifestProviderError):
    """A bundle reference points somewhere the configuration does not allow.

    This is deterministic for a given configuration, so it becomes a verdict
    (``REFERENCE_NOT_ALLOWED``), not a transient failure.
    """


class DeadlineExceededError(SourceError):
    """The answer could not be computed within the internal deadline."""


class InputError(ManifestProviderError):
    """A request, key or file cannot be a verification request at all."""


class ConfigError(ManifestProviderError):
    """The configuration is invalid; ``problems`` lists every finding."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems) or ("invalid configuration",)
        super().__init__("; ".join(self.problems))

    def diagnostics(self) -> str:
        return f"{len(self.problems)} configuration problem(s): " + "; ".join(self.problems)

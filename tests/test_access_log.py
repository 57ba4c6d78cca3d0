"""``server.accessLog``: one gunicorn access line per request, off by default.

Every answered key already has its own JSON log line; the per-request access
line is opt-in because it costs about a tenth of the throughput of warm
single-key requests (see docs/serving.md).
"""

from __future__ import annotations

import pytest

from provider.config import parse_settings
from provider.errors import ConfigError
from provider.server import ProviderServer, ServerOptions


def options(server: dict[str, object]) -> ServerOptions:
    settings = parse_settings({"server": {"tls": {"insecurePlainHTTP": True}, **server}})
    return ServerOptions.from_settings(settings.server)


def gunicorn_accesslog(opts: ServerOptions) -> object:
    return ProviderServer(opts, lambda: lambda environ, start: []).gunicorn_settings()["accesslog"]


def test_access_log_is_off_by_default() -> None:
    opts = options({})
    assert opts.access_log is False
    assert gunicorn_accesslog(opts) is None


def test_access_log_can_be_turned_on() -> None:
    opts = options({"accessLog": True})
    assert opts.access_log is True
    assert gunicorn_accesslog(opts) == "-"


def test_access_log_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match=r"server\.accessLog"):
        parse_settings({"server": {"accessLog": "yes"}})

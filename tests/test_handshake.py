"""The sans-I/O handshake checks: headers in, decisions out."""

import pytest

from django_websocket.exceptions import ForbiddenOrigin, MalformedWebSocket
from django_websocket.handshake import (
    OriginPolicy,
    header_tokens,
    is_upgrade_request,
    offered_subprotocols,
    select_subprotocol,
    validate_upgrade,
)

VALID = {
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def test_header_tokens_split_commas_and_lower_case():
    """Comma-separated tokens are split, stripped and lower-cased."""
    assert header_tokens("keep-alive, Upgrade") == ["keep-alive", "upgrade"]
    assert header_tokens(None) == []
    assert header_tokens(" , ") == []


@pytest.mark.parametrize("value", ["websocket", "WebSocket", "h2c, websocket"])
def test_upgrade_requests_are_recognised_case_insensitively(value):
    """Upgrade: websocket is recognised whatever its case, among other tokens."""
    assert is_upgrade_request({"upgrade": value})


@pytest.mark.parametrize("headers", [{}, {"upgrade": "h2c"}, {"connection": "upgrade"}])
def test_other_requests_are_not_upgrade_requests(headers):
    """Without a websocket Upgrade token the request is plain HTTP."""
    assert not is_upgrade_request(headers)


def test_a_valid_request_passes():
    """A request as browsers send it passes, Firefox's Connection header included."""
    validate_upgrade("GET", VALID)
    validate_upgrade("GET", {**VALID, "connection": "keep-alive, Upgrade"})


@pytest.mark.parametrize(
    ("method", "change", "status", "words"),
    [
        ("POST", {}, 400, "GET"),
        ("GET", {"upgrade": "websocket, h2c"}, 400, "Upgrade"),
        ("GET", {"connection": "keep-alive"}, 400, "Connection"),
        ("GET", {"sec-websocket-version": None}, 400, "Sec-WebSocket-Version"),
        ("GET", {"sec-websocket-version": "8"}, 426, "version"),
        ("GET", {"sec-websocket-version": "13, 8"}, 426, "version"),
        ("GET", {"sec-websocket-key": None}, 400, "Sec-WebSocket-Key"),
        ("GET", {"sec-websocket-key": "!!!"}, 400, "base64"),
        ("GET", {"sec-websocket-key": "é"}, 400, "base64"),
        ("GET", {"sec-websocket-key": "c2hvcnQ="}, 400, "16 bytes"),
    ],
)
def test_malformed_requests_raise_with_status_and_reason(method, change, status, words):
    """Each RFC 6455 violation has its status (400, 426 for versions) and a reason."""
    headers = {k: v for k, v in {**VALID, **change}.items() if v is not None}
    with pytest.raises(MalformedWebSocket) as error:
        validate_upgrade(method, headers)
    assert error.value.status == status
    assert words in error.value.reason
    assert isinstance(error.value, ValueError)


def test_subprotocols_keep_the_client_order():
    """Offered subprotocols are read in the client's order."""
    assert offered_subprotocols({"sec-websocket-protocol": "b, a,,c"}) == ["b", "a", "c"]
    assert offered_subprotocols({}) == []


def test_the_first_offered_subprotocol_the_view_supports_is_chosen():
    """Selection follows the client's preference among the view's protocols."""
    assert select_subprotocol(["x", "b", "a"], ["a", "b"]) == "b"
    assert select_subprotocol(["x"], ["a"]) is None
    assert select_subprotocol(["a"], []) is None


OWN = "http://example.com"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://example.com", True),
        ("http://EXAMPLE.com:80", True),
        ("https://example.com", False),
        ("http://example.com:8080", False),
        ("http://sub.example.com", False),
        ("http://evil.example", False),
        ("null", False),
        ("not an origin", False),
        ("http://example.com/path", False),
        ("http://[bad", False),
    ],
)
def test_same_origin_compares_scheme_host_and_port(origin, allowed):
    """The request's own origin passes; scheme, host or port differences do not."""
    assert OriginPolicy().allows(origin, OWN) is allowed


def test_trusted_origins_are_exact_or_wildcard_subdomains():
    """Trusted origins follow CSRF_TRUSTED_ORIGINS' format, wildcards included."""
    policy = OriginPolicy(trusted=("https://app.example.org", "https://*.example.net"))
    assert policy.allows("https://app.example.org", OWN)
    assert not policy.allows("http://app.example.org", OWN)
    assert policy.allows("https://a.b.example.net", OWN)
    assert policy.allows("https://example.net", OWN)
    assert not policy.allows("https://badexample.net", OWN)
    assert not policy.allows("https://example.net:8443", OWN)


def test_a_star_allows_every_origin():
    """'*' allows any origin, null included."""
    assert OriginPolicy(trusted=("*",)).allows("null", OWN)


def test_a_missing_origin_is_allowed_unless_required():
    """Non-browser clients send no Origin; they pass unless require_origin is set."""
    assert OriginPolicy().allows(None, OWN)
    assert not OriginPolicy(require_origin=True).allows(None, OWN)


def test_a_missing_origin_with_cookies_is_refused_whatever_the_trusted_origins():
    """Cookies are what a hijacked browser brings: without an Origin they are refused."""
    assert not OriginPolicy().allows(None, OWN, with_cookies=True)
    assert not OriginPolicy(trusted=("*",)).allows(None, OWN, with_cookies=True)
    assert OriginPolicy().allows(OWN, OWN, with_cookies=True)
    with pytest.raises(ForbiddenOrigin, match="with cookies must send an Origin header"):
        OriginPolicy().check(None, OWN, with_cookies=True)


def test_an_unknown_own_origin_still_allows_trusted_origins():
    """When the host is not allowed, only trusted origins pass."""
    assert not OriginPolicy().allows("http://example.com", None)
    assert OriginPolicy(trusted=("http://example.com",)).allows("http://example.com", None)


def test_check_raises_forbidden_origin():
    """check() turns a refusal into ForbiddenOrigin naming the origin."""
    with pytest.raises(ForbiddenOrigin, match="evil"):
        OriginPolicy().check("http://evil.example", OWN)
    with pytest.raises(ForbiddenOrigin, match="no Origin header"):
        OriginPolicy(require_origin=True).check(None, OWN)

"""The opening handshake's decisions, without any I/O (RFC 6455 section 4.2.1).

Headers come in as a mapping of lower-case names to values (several occurrences
joined with ``", "``, as HTTP allows); decisions come out: is this an upgrade
request, is it well formed, which subprotocol is chosen, may its Origin connect.
Transports and the Django layer build the mapping from a WSGI environ or an ASGI
scope and turn the decisions into responses.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .exceptions import ForbiddenOrigin, MalformedWebSocket

__all__ = [
    "SUPPORTED_VERSION",
    "OriginPolicy",
    "header_tokens",
    "is_upgrade_request",
    "offered_subprotocols",
    "select_subprotocol",
    "validate_upgrade",
]

SUPPORTED_VERSION = "13"


def header_tokens(value: str | None) -> list[str]:
    """Split a comma-separated header value into lower-case tokens."""
    if not value:
        return []
    return [token.strip().lower() for token in value.split(",") if token.strip()]


def is_upgrade_request(headers: Mapping[str, str]) -> bool:
    """Tell whether the client asks for a WebSocket (``Upgrade: websocket``).

    Tokens compare case-insensitively: browsers send ``websocket`` while the
    2010 drafts used ``WebSocket``. Whether the request is *valid* is a separate
    question, answered by :func:`validate_upgrade`.
    """
    return "websocket" in header_tokens(headers.get("upgrade"))


def validate_upgrade(method: str, headers: Mapping[str, str]) -> None:
    """Check an upgrade request against RFC 6455 section 4.2.1.

    Raises:
        MalformedWebSocket: with status 400 and a short reason for a malformed
            request, or status 426 when the client speaks another protocol version
            (the response must then carry ``Sec-WebSocket-Version: 13``).
    """
    if method != "GET":
        raise MalformedWebSocket(f"WebSocket handshake must use GET, not {method}")
    if header_tokens(headers.get("upgrade")) != ["websocket"]:
        raise MalformedWebSocket("the Upgrade header must be 'websocket' alone")
    if "upgrade" not in header_tokens(headers.get("connection")):
        raise MalformedWebSocket("missing 'Connection: Upgrade' header")
    if headers.get("sec-websocket-version") is None:
        raise MalformedWebSocket("missing Sec-WebSocket-Version header")
    if headers.get("sec-websocket-key") is None:
        raise MalformedWebSocket("missing Sec-WebSocket-Key header")
    validate_handshake_values(headers)


def validate_handshake_values(headers: Mapping[str, str]) -> None:
    """Check the version and key headers that are present (RFC 6455 section 4.2.1).

    ASGI servers check the handshake before the application sees it, but some
    accept what RFC 6455 does not (wsproto any key, autobahn older versions)
    and some keep these headers from the application: what is there is checked.

    Raises:
        MalformedWebSocket: as :func:`validate_upgrade` does.
    """
    version = headers.get("sec-websocket-version")
    if version is not None and version.strip() != SUPPORTED_VERSION:
        raise MalformedWebSocket(
            f"unsupported WebSocket version {version.strip()[:20]!r}; this server speaks 13",
            status=426,
        )
    key = headers.get("sec-websocket-key")
    if key is None:
        return
    try:
        raw_key = base64.b64decode(key.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise MalformedWebSocket("Sec-WebSocket-Key is not base64") from None
    if len(raw_key) != 16:
        raise MalformedWebSocket("Sec-WebSocket-Key must encode 16 bytes")


def offered_subprotocols(headers: Mapping[str, str]) -> list[str]:
    """Return the subprotocols the client offers, in its order of preference."""
    value = headers.get("sec-websocket-protocol", "")
    return [token.strip() for token in value.split(",") if token.strip()]


def select_subprotocol(offered: Iterable[str], supported: Sequence[str]) -> str | None:
    """Pick the first subprotocol the client offers that the view supports.

    Returns ``None`` when there is nothing in common: the handshake then carries
    no ``Sec-WebSocket-Protocol`` header (RFC 6455 section 4.2.2, step 5.4), and
    the client decides whether to go on.
    """
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


def _default_port(scheme: str) -> str:
    return "443" if scheme in ("https", "wss") else "80"


def _split_origin(origin: str) -> tuple[str, str, str] | None:
    """Split ``scheme://host[:port]`` into lower-case scheme, host and explicit port."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path or parts.query:
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname.lower(), str(port) if port else _default_port(scheme)


@dataclass(frozen=True)
class OriginPolicy:
    """Which ``Origin`` headers may open a WebSocket.

    Modelled on Django's CSRF origin check: the request's own origin (scheme,
    host and port) is always allowed; ``trusted`` adds origins in the format of
    ``CSRF_TRUSTED_ORIGINS`` (``https://example.com``, ``https://*.example.com``,
    or ``*`` for any origin).

    Browsers always send an Origin header with a WebSocket handshake (RFC 6455
    section 10.2), so a request without one comes from another kind of client.
    It is allowed unless ``require_origin`` is set, or unless it carries
    cookies: cookies are what a hijacked browser would bring, and a
    non-browser client that uses them can say where it comes from.
    """

    trusted: tuple[str, ...] = ()
    require_origin: bool = False

    def allows(
        self, origin: str | None, own_origin: str | None, *, with_cookies: bool = False
    ) -> bool:
        """Tell whether ``origin`` may connect to a server whose origin is ``own_origin``.

        Args:
            origin: the request's Origin header, or None when it has none.
            own_origin: ``scheme://host[:port]`` of the request itself, or None when
                the host is not an allowed one.
            with_cookies: whether the request carries a Cookie header.
        """
        if origin is None:
            return not (self.require_origin or with_cookies)
        if "*" in self.trusted:
            return True
        candidate = _split_origin(origin.strip())
        if candidate is None:
            # "null" (sandboxed frames, file: pages) and garbage are never same-origin.
            return False
        if own_origin is not None and candidate == _split_origin(own_origin):
            return True
        return any(_matches(candidate, pattern) for pattern in self.trusted)

    def check(
        self, origin: str | None, own_origin: str | None, *, with_cookies: bool = False
    ) -> None:
        """Raise :class:`ForbiddenOrigin` unless :meth:`allows` says yes."""
        if not self.allows(origin, own_origin, with_cookies=with_cookies):
            raise ForbiddenOrigin(origin, with_cookies=with_cookies)


def _matches(candidate: tuple[str, str, str], pattern: str) -> bool:
    scheme, host, port = candidate
    wildcard = "://*." in pattern
    allowed = _split_origin(pattern.replace("://*.", "://", 1) if wildcard else pattern)
    if allowed is None:
        return False
    allowed_scheme, allowed_host, allowed_port = allowed
    if scheme != allowed_scheme or port != allowed_port:
        return False
    if wildcard:
        return host == allowed_host or host.endswith("." + allowed_host)
    return host == allowed_host

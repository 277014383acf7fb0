"""Bad input, never a crash: property-based tests of the handshake on every path.

Any bytes in any handshake header (missing, empty, huge, control characters,
non-ASCII, repeated) end in 101, 400, 403 or 426: never a 500, never an
exception out of our code, and 101 only for a handshake that RFC 6455 accepts.

Three paths: the sans-I/O checks and the engine's handshake (``handshake.py``,
``protocol.py``); Django's WSGI handler with a socketpair in the environ, as
runserver lends its socket; our ASGI application driven in process.

A long fuzzing run uses the same tests with many more examples::

    DJWS_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz_handshake.py \
        -p no:randomly --hypothesis-show-statistics
"""

import asyncio
import base64
import hashlib
import io
import os
import re
import socket

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import override_settings
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from django_websocket.exceptions import ForbiddenOrigin, MalformedWebSocket
from django_websocket.handshake import (
    OriginPolicy,
    header_tokens,
    is_upgrade_request,
    offered_subprotocols,
    select_subprotocol,
    validate_handshake_values,
    validate_upgrade,
)
from django_websocket.protocol import EngineLimits, HandshakeFailed, perform_handshake
from django_websocket.wsgi import RUNSERVER_SOCKET_KEY, TAKEN_OVER_KEY

from .clients import application, read_until_eof, websocket_scope
from .conftest import timeout

#: Examples per test: modest in the normal suite, DJWS_FUZZ_EXAMPLES for a long run.
FUZZ_EXAMPLES = int(os.environ.get("DJWS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES or 60,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the tree; failures print their input
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    # DJWS_FUZZ_NO_SHRINK=1 reports the first failure as found, without minimising it.
    phases=[p for p in Phase if p != Phase.shrink or not os.environ.get("DJWS_FUZZ_NO_SHRINK")],
)
#: A long run has no per-test timeout (pyproject's 120 s is for the normal suite).
pytestmark = pytest.mark.timeout(0 if FUZZ_EXAMPLES else 120)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REFUSALS = {400, 403, 426}
HOSTS = ["testserver", "127.0.0.1", "localhost", "127.0.0.1:8000", "TestServer", "evil.example"]

# ---- strategies ------------------------------------------------------------------------

# What servers hand over: header bytes decoded as latin-1 (PEP 3333, Django's ASGIRequest).
any_bytes = st.binary(max_size=64)
latin1_text = st.text(st.characters(max_codepoint=0xFF), max_size=64)
huge = st.builds(lambda c, n: c * n, st.sampled_from("a= ,\x00é\t"), st.integers(4000, 20000))
keys = st.binary(min_size=16, max_size=16).map(lambda raw: base64.b64encode(raw).decode())

VALID = {
    "upgrade": ["websocket", "WebSocket", " websocket\t"],
    "connection": ["Upgrade", "keep-alive, Upgrade", "upgrade", "Upgrade, HTTP2-Settings"],
    "sec-websocket-key": ["dGhlIHNhbXBsZSBub25jZQ=="],
    "sec-websocket-version": ["13", " 13 "],
    "sec-websocket-protocol": ["chat.v1", "chat.v2, chat.v1", "other, chat.v1", "x"],
    "sec-websocket-extensions": [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover, x-webkit-deflate-frame",
    ],
    "origin": ["http://testserver", "http://127.0.0.1", "null", "https://testserver"],
    "host": HOSTS,
    "cookie": ["sessionid=abc; csrftoken=xyz", "a=b"],
}
NAMES = list(VALID)


def _mutate(value: str, data: bytes, at: int) -> str:
    at %= len(value) + 1
    return value[:at] + data.decode("latin-1") + value[at:]


def header_value(name: str) -> st.SearchStrategy[str]:
    """One occurrence of header ``name``: valid, near-valid, or anything at all."""
    valid = st.sampled_from(VALID[name])
    if name == "sec-websocket-key":
        valid = valid | keys
    return st.one_of(
        valid,
        valid,  # twice: keep valid handshakes frequent enough to reach 101
        st.builds(_mutate, valid, st.binary(min_size=1, max_size=4), st.integers(0, 64)),
        any_bytes.map(lambda raw: raw.decode("latin-1")),
        latin1_text,
        st.just(""),
        huge,
    )


@st.composite
def header_lists(draw, *, required_valid: bool = False) -> dict[str, list[str]]:
    """Each handshake header absent, once, or repeated; mostly a near-valid request."""
    headers = {}
    for name in NAMES:
        if required_valid:
            headers[name] = [draw(st.sampled_from(VALID[name]))]
            continue
        count = draw(st.sampled_from([1, 1, 1, 1, 0, 2, 3]))
        if count:
            headers[name] = [draw(header_value(name)) for _ in range(count)]
    return headers


methods = st.sampled_from(["GET", "GET", "GET", "POST", "HEAD", "get", "", "GET "]) | latin1_text


def joined(headers: dict[str, list[str]], sep: str = ", ") -> dict[str, str]:
    """Repeated headers as one value, as HTTP allows and servers do."""
    return {name: sep.join(values) for name, values in headers.items()}


# ---- an independent oracle: what RFC 6455 section 4.2.1 accepts --------------------------


def _tokens(value: str | None) -> list[str]:
    return [t.strip(" \t").lower() for t in (value or "").split(",") if t.strip(" \t")]


def _valid_key(key: str | None) -> bool:
    return (
        key is not None and re.fullmatch(r"[ \t]*[A-Za-z0-9+/]{21}[AQgw]==[ \t]*", key) is not None
    )


def rfc_handshake_ok(headers: dict[str, str], method: str = "GET", *, asgi: bool = False) -> bool:
    """Upgrade, Connection, version 13 and a 16-byte key (ASGI servers check the first ones)."""
    version = headers.get("sec-websocket-version")
    key = headers.get("sec-websocket-key")
    if asgi:
        return (version is None or version.strip(" \t") == "13") and (
            key is None or _valid_key(key)
        )
    return (
        method == "GET"
        and "websocket" in _tokens(headers.get("upgrade"))
        and "upgrade" in _tokens(headers.get("connection"))
        and version is not None
        and version.strip(" \t") == "13"
        and _valid_key(key)
    )


def same_origin_ok(headers: dict[str, str], scheme: str = "http") -> bool:
    """The Host is an allowed one and the Origin, if any, is the request's own."""
    host = headers.get("host", "testserver")
    match = re.fullmatch(r"([a-z0-9.]+)(?::(\d+))?", host.lower())
    if not match or match[1].rstrip(".") not in ("testserver", "127.0.0.1", "localhost"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    default = "443" if scheme == "https" else "80"
    own = (scheme, match[1], match[2] or default)
    o = re.fullmatch(r"(https?)://([a-z0-9.]+)(?::(\d+))?", origin.strip(" \t").lower())
    return o is not None and (o[1], o[2], o[3] or ("443" if o[1] == "https" else "80")) == own


def accept_value(key: str) -> str:
    digest = hashlib.sha1((key.strip() + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


# ---- a. the sans-I/O checks and the engine ----------------------------------------------


@FUZZ
@given(method=methods, headers=header_lists(), supported=st.lists(latin1_text, max_size=3))
def test_sans_io_checks_accept_or_raise_documented_errors(method, headers, supported):
    """validate_upgrade, the Origin policy and the engine: accept, or 400/403/426."""
    mapping = joined(headers)
    assert isinstance(is_upgrade_request(mapping), bool)
    assert all(isinstance(t, str) for t in header_tokens(mapping.get("connection")))
    offered = offered_subprotocols(mapping)
    chosen = select_subprotocol(offered, supported)
    assert chosen is None or (chosen in offered and chosen in supported)
    try:
        validate_handshake_values(mapping)
    except MalformedWebSocket as exc:
        assert exc.status in (400, 426)
    try:
        validate_upgrade(method, mapping)
        host = mapping.get("host", "testserver")
        for policy in (OriginPolicy(), OriginPolicy(trusted=("https://*.example", "*"))):
            try:
                policy.check(mapping.get("origin"), f"http://{host}")
            except ForbiddenOrigin as exc:
                assert isinstance(str(exc), str)
        # Our checks passed: the engine may still refuse, with a 4xx, never crash.
        pairs = [(name, value) for name, values in headers.items() for value in values]
        try:
            _, response = perform_handshake("/ws/", pairs, chosen, EngineLimits())
        except HandshakeFailed as exc:
            assert exc.status in REFUSALS, (exc.status, exc.reason)
        else:
            assert response.startswith(b"HTTP/1.1 101 ")
            assert rfc_handshake_ok(mapping, method)
            assert accept_value(mapping["sec-websocket-key"]).encode() in response
    except MalformedWebSocket as exc:
        assert exc.status in (400, 426), exc.status
        assert exc.status == 400 or "version" in exc.reason


# ---- b. Django's WSGI handler, with a socket lent as runserver does ----------------------

WSGI_PATHS = ["/untouched/", "/chat/", "/echo/"]
#: What a client that closes at once has already sent: a masked close frame (1000).
#: (It also shuts its side down: a client that sends a close frame but keeps the TCP
#: connection open holds a WSGI view's receive loop longer than WEBSOCKET_CLOSE_TIMEOUT.)
CLIENT_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


@pytest.fixture(scope="module")
def wsgi_handler():
    # No keepalive thread per accepted connection; a prompt close.
    with override_settings(WEBSOCKET_PING_INTERVAL=None, WEBSOCKET_CLOSE_TIMEOUT=1):
        yield WSGIHandler()


def wsgi_environ(method: str, path: str, headers: dict[str, str], sock) -> dict:
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        RUNSERVER_SOCKET_KEY: sock,
    }
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


@FUZZ
@given(
    method=methods,
    path=st.sampled_from(WSGI_PATHS),
    headers=header_lists() | header_lists(required_valid=True),
)
def test_wsgi_path_answers_101_400_403_or_426(wsgi_handler, method, path, headers):
    """Any header bytes through Django's WSGI handler: 101 (valid only), 400, 403 or 426."""
    # Servers join repeated headers with "," (wsgiref, gunicorn).
    mapping = joined(headers, ",")
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.sendall(CLIENT_CLOSE)
        client_side.shutdown(socket.SHUT_WR)
        environ = wsgi_environ(method, path, mapping, server_side)
        statuses = []
        response = wsgi_handler(
            environ, lambda status, headers, exc_info=None: statuses.append(status)
        )
        try:
            status = response.status_code
        finally:
            response.close()
        server_side.shutdown(socket.SHUT_RDWR)
        sent = read_until_eof(client_side, 2)  # the server side is shut down: EOF comes
    if path == "/echo/" and "websocket" not in _tokens(mapping.get("upgrade")):
        # accept_websocket: plain HTTP goes to the view (or Django refuses a bad Host).
        assert status in (200, 400), status
        return
    assert status == 101 or status in REFUSALS, (status, b"".join(response))
    if status == 101:
        assert environ.get(TAKEN_OVER_KEY)
        # Django upper-cases REQUEST_METHOD, so "get" counts as GET (gunicorn refuses it).
        assert rfc_handshake_ok(mapping, method.upper()), mapping
        assert same_origin_ok(mapping), mapping
        head = sent.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 101 ")
        assert accept_value(mapping["sec-websocket-key"]).encode() in head
    else:
        # The refusal is for the server to write: nothing went out on the socket.
        assert sent == b"" and not environ.get(TAKEN_OVER_KEY), sent[:200]
        assert statuses and int(statuses[0].split()[0]) == status


def browser_handshake_status(wsgi_handler, **overrides: str) -> int:
    """The status of a browser's handshake (with ``overrides``) on the WSGI path."""
    headers = {name: values[0] for name, values in VALID.items()} | overrides
    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.sendall(CLIENT_CLOSE)
        client_side.shutdown(socket.SHUT_WR)
        environ = wsgi_environ("GET", "/untouched/", headers, server_side)
        response = wsgi_handler(environ, lambda *args: None)
        response.close()
    return response.status_code


def test_wsgi_path_accepts_a_browser_handshake(wsgi_handler):
    """The fuzzed path does reach 101: the property above is not vacuous."""
    assert browser_handshake_status(wsgi_handler) == 101


@pytest.mark.parametrize("value", ["a=\x01", "a=\x7f", "a=\x1b[0m"])
def test_a_control_character_in_a_header_is_a_400_not_a_500(wsgi_handler, value):
    """Found by the fuzzer: a browser handshake plus ``Cookie: a=\\x01`` was a 500.

    runserver (wsgiref) passes such bytes through; our checks accept the request, and
    the engine refuses the value: that must be a 400, not an exception.
    """
    assert browser_handshake_status(wsgi_handler, cookie=value) == 400


# ---- c. our ASGI application, in process -------------------------------------------------

ASGI_PATHS = ["/untouched/", "/chat/", "/async/chat/"]


@st.composite
def asgi_headers(draw) -> list[tuple[bytes, bytes]]:
    """Header pairs as an ASGI server passes them: lower-case names, any bytes, repeats."""
    pairs = []
    for name, values in draw(header_lists() | header_lists(required_valid=True)).items():
        for value in values:
            raw = value.encode("latin-1")
            if draw(st.integers(0, 9)) == 0:
                raw = draw(any_bytes)
            pairs.append((name.encode(), raw))
    return draw(st.permutations(pairs))


async def drive(scope) -> list[dict]:
    """Run one connection; the client leaves as soon as the app has answered."""
    to_app: asyncio.Queue = asyncio.Queue()
    events: list[dict] = []
    await to_app.put({"type": "websocket.connect"})

    async def send(event):
        events.append(event)
        if event["type"] in ("websocket.accept", "websocket.close"):
            await to_app.put({"type": "websocket.disconnect", "code": 1000})

    await asyncio.wait_for(application(scope, to_app.get, send), timeout(10))
    return events


def _decoded(pairs) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for name, value in pairs:
        name, value = name.decode(), value.decode("latin-1")
        mapping[name] = f"{mapping[name]},{value}" if name in mapping else value
    return mapping


@FUZZ
@given(
    path=st.sampled_from(ASGI_PATHS),
    headers=asgi_headers(),
    subprotocols=st.lists(st.sampled_from(["chat.v1", "chat.v2", ""]) | latin1_text, max_size=4),
    denial=st.booleans(),
    scheme=st.sampled_from(["ws", "wss"]),
)
def test_asgi_path_accepts_or_refuses_with_400_403_or_426(
    path, headers, subprotocols, denial, scheme
):
    """Any header bytes and subprotocols on a websocket scope: accept, or 400/403/426."""
    scope = websocket_scope(
        path, scheme=scheme, denial=denial, headers=headers, subprotocols=subprotocols
    )
    events = asyncio.run(drive(scope))
    assert events, "the application answered nothing"
    first = events[0]
    mapping = _decoded(headers)
    if first["type"] == "websocket.accept":
        assert rfc_handshake_ok(mapping, asgi=True), mapping
        assert same_origin_ok(mapping, "https" if scheme == "wss" else "http"), mapping
        chosen = first.get("subprotocol")
        assert chosen is None or (chosen in subprotocols and chosen in ("chat.v1", "chat.v2"))
    elif first["type"] == "websocket.http.response.start":
        assert denial and first["status"] in REFUSALS, first
        assert events[1]["type"] == "websocket.http.response.body"
        assert len(events) == 2
    else:
        assert first["type"] == "websocket.close" and not denial, first
        assert len(events) == 1

"""Decorators and middleware in process: routing, refusals and Origin decisions."""

import asyncio

import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from django_websocket import accept_websocket, require_websocket
from django_websocket.middleware import WebSocketMiddleware

from .readme_examples import readme

UPGRADE = {
    "HTTP_UPGRADE": "websocket",
    "HTTP_CONNECTION": "Upgrade",
    "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    "HTTP_SEC_WEBSOCKET_VERSION": "13",
}


@pytest.fixture
def rf():
    return RequestFactory()


@accept_websocket
def refuses_politely(request):
    """Returns a response without touching the WebSocket: a refusal with that response."""
    return HttpResponse(f"view ran, is_websocket={request.is_websocket()}", status=409)


def test_require_websocket_answers_plain_http_with_400(rf):
    """Plain HTTP to require_websocket gets 400 and a body saying why."""
    response = readme.echo_once(rf.get("/"))
    assert response.status_code == 400
    assert b"only takes WebSocket connections" in response.content


def test_accept_websocket_passes_plain_http_to_the_view(rf):
    """The README's lower_case answers a plain GET."""
    response = readme.lower_case(rf.get("/", {"message": "HeLLo"}))
    assert (response.status_code, response.content) == (200, b"hello")


def test_plain_requests_get_is_websocket_false_and_no_websocket(rf):
    """is_websocket() is False and websocket None for plain HTTP; bool() agrees."""
    request = rf.get("/")
    refuses_politely(request)
    assert request.is_websocket() is False and not request.is_websocket
    assert request.websocket is None


def test_a_valid_upgrade_reaches_the_view_which_may_refuse(rf):
    """A valid upgrade runs the view; its response refuses the WebSocket (lazy accept)."""
    request = rf.get("/", **UPGRADE, HTTP_ORIGIN="http://testserver")
    request.environ["django_websocket.socket"] = object()  # a server that lends sockets
    response = refuses_politely(request)
    assert (response.status_code, response.content) == (409, b"view ran, is_websocket=True")
    assert request.is_websocket() and request.is_websocket
    assert not request.websocket.accepted


@pytest.mark.parametrize(
    ("change", "status"),
    [({"HTTP_SEC_WEBSOCKET_KEY": "bad"}, 400), ({"HTTP_SEC_WEBSOCKET_VERSION": "7"}, 426)],
)
def test_malformed_upgrades_never_reach_the_view(rf, change, status):
    """400 (426 with the supported version) before the view runs."""
    response = refuses_politely(rf.get("/", **{**UPGRADE, **change}))
    assert response.status_code == status
    if status == 426:
        assert response["Sec-WebSocket-Version"] == "13"


def test_a_server_that_cannot_lend_its_socket_gets_501(rf):
    """Without a socket in the environ the answer is 501, naming the supported servers."""
    response = refuses_politely(rf.get("/", **UPGRADE))
    assert response.status_code == 501
    assert b"gunicorn" in response.content


@pytest.mark.parametrize(
    ("origin", "settings", "allowed"),
    [
        ("http://testserver", {}, True),
        ("https://testserver", {}, False),
        ("http://other.example", {}, False),
        ("http://other.example", {"CSRF_TRUSTED_ORIGINS": ["http://other.example"]}, True),
        ("https://a.other.example", {"CSRF_TRUSTED_ORIGINS": ["https://*.other.example"]}, True),
        ("http://other.example", {"WEBSOCKET_ALLOWED_ORIGINS": ["http://other.example"]}, True),
        ("null", {"WEBSOCKET_ALLOWED_ORIGINS": ["*"]}, True),
        (None, {}, True),
        (None, {"WEBSOCKET_REQUIRE_ORIGIN": True}, False),
    ],
)
def test_origin_policy_follows_settings(rf, origin, settings, allowed):
    """Same origin, CSRF_TRUSTED_ORIGINS and WEBSOCKET_ALLOWED_ORIGINS decide; else 403."""
    extra = {} if origin is None else {"HTTP_ORIGIN": origin}
    with override_settings(**settings):
        request = rf.get("/", **UPGRADE, **extra)
        request.environ["django_websocket.socket"] = object()
        response = refuses_politely(request)
    assert response.status_code == (409 if allowed else 403)


def test_proxy_headers_count_only_when_django_trusts_them(rf):
    """X-Forwarded-Proto/Host change the request's origin only under Django's settings."""
    headers = {
        **UPGRADE,
        "HTTP_ORIGIN": "https://public.example",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_HOST": "public.example",
    }
    with override_settings(ALLOWED_HOSTS=["testserver", "public.example"]):
        request = rf.get("/", **headers)
        request.environ["django_websocket.socket"] = object()
        assert refuses_politely(request).status_code == 403
    with override_settings(
        ALLOWED_HOSTS=["testserver", "public.example"],
        SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
        USE_X_FORWARDED_HOST=True,
    ):
        request = rf.get("/", **headers)
        request.environ["django_websocket.socket"] = object()
        assert refuses_politely(request).status_code == 409


def test_a_disallowed_host_is_a_400_not_a_500(rf):
    """A Host outside ALLOWED_HOSTS raises DisallowedHost, which Django answers with 400."""
    from django.core.exceptions import DisallowedHost

    request = rf.get("/", **UPGRADE, HTTP_HOST="evil.example", HTTP_ORIGIN="http://evil.example")
    with pytest.raises(DisallowedHost):
        refuses_politely(request)


def test_decorators_keep_the_view_identity_and_set_markers():
    """The wrapper keeps name and docstring and carries the markers the middleware reads."""
    assert refuses_politely.__name__ == "refuses_politely"
    assert refuses_politely.__doc__.startswith("Returns a response")
    assert refuses_politely.accept_websocket is True
    assert refuses_politely.require_websocket is False

    @accept_websocket
    @require_websocket(protocols=["p"])
    def both(request):
        pass

    assert both.require_websocket is True and both.websocket_protocols == ("p",)


def test_decorating_does_not_change_the_view_function():
    """The user's function is not mutated (the original set attributes on it)."""

    def view(request):
        pass

    accept_websocket(view)
    assert not hasattr(view, "accept_websocket")


def test_async_views_stay_async_and_sync_views_stay_sync():
    """The wrapper of an async view is a coroutine function, that of a sync view is not."""
    from asgiref.sync import iscoroutinefunction

    async def async_view(request):
        pass

    def sync_view(request):
        pass

    assert iscoroutinefunction(accept_websocket(async_view))
    assert iscoroutinefunction(require_websocket(protocols=["a"])(async_view))
    assert not iscoroutinefunction(accept_websocket(sync_view))


def test_an_async_view_gets_async_websocket_and_plain_http_passes(rf):
    """An async view sees AsyncWebSocket for an upgrade and None for plain HTTP."""
    from django_websocket import AsyncWebSocket

    seen = []

    @accept_websocket
    async def view(request):
        seen.append(request.websocket)
        return HttpResponse("refused", status=409)

    assert asyncio.run(view(rf.get("/"))).status_code == 409 and seen == [None]
    request = rf.get("/", **UPGRADE, HTTP_ORIGIN="http://testserver")
    request.environ["django_websocket.socket"] = object()  # a server that lends sockets
    response = asyncio.run(view(request))
    assert response.status_code == 409 and isinstance(seen[1], AsyncWebSocket)


def plain_view(request):
    return HttpResponse("plain")


def test_middleware_refuses_websockets_for_views_that_do_not_accept(rf):
    """The middleware answers 400 for a WebSocket to an undecorated view."""
    request = rf.get("/", **UPGRADE)
    request.environ["django_websocket.socket"] = object()
    middleware = WebSocketMiddleware(lambda r: HttpResponse("inner"))
    assert middleware(request).content == b"inner"  # process_request part
    response = middleware.process_view(request, plain_view, (), {})
    assert response.status_code == 400 and b"does not accept" in response.content
    with override_settings(WEBSOCKET_ACCEPT_ALL=True):
        assert middleware.process_view(request, plain_view, (), {}) is None


def test_middleware_gives_plain_requests_is_websocket(rf):
    """Every request through the middleware has is_websocket() and websocket."""
    seen = {}

    def inner(request):
        seen.update(is_ws=request.is_websocket(), ws=request.websocket)
        return HttpResponse()

    WebSocketMiddleware(inner)(rf.get("/"))
    assert seen == {"is_ws": False, "ws": None}


def test_a_client_gone_during_the_handshake_ends_the_view_quietly(rf):
    """send() after a failed 101 raises ConnectionClosed, which ends the view, not a 500."""
    import socket

    from django_websocket.request import TakenOverResponse

    @require_websocket
    def sender(request):
        request.websocket.send("never arrives")

    dead = socket.socket()  # never connected: writing to it fails like a vanished client
    try:
        request = rf.get("/", **UPGRADE)
        request.environ["django_websocket.socket"] = dead
        response = sender(request)
    finally:
        dead.close()
    assert isinstance(response, TakenOverResponse)
    assert request.websocket.close_code == 1006


def test_a_handshake_the_engine_refuses_becomes_its_4xx_not_a_500(rf):
    """Whatever the engine refuses after our checks is answered with its status (426 named)."""
    from django_websocket.protocol import HandshakeFailed
    from django_websocket.request import finish
    from django_websocket.websocket import WebSocket

    class RefusingEngine:
        def open(self, subprotocol):
            raise HandshakeFailed(426, b"Unsupported version\n")

    request = rf.get("/", **UPGRADE)
    request.websocket = WebSocket(RefusingEngine())
    assert request.websocket.wait() is None
    response = finish(request, None)
    assert (response.status_code, response.content) == (426, b"Unsupported version\n")
    assert response["Sec-WebSocket-Version"] == "13"

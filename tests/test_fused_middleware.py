"""WebSocket requests run the middleware's hooks with fewer thread hops (FusedMiddleware),
with exactly what Django's own async chain does for HTTP: compared here, case by case."""

import asyncio

import pytest
from django.core.signals import request_finished, request_started
from django.test import AsyncClient, override_settings

from django_websocket.asgi import FusedMiddleware, WebSocketASGIHandler
from django_websocket.test import WebSocketClient, WebSocketRefused

from . import middleware
from .middleware import EVENTS

MIDDLEWARE = [f"tests.middleware.{name}" for name in ("A", "B", "C")]
WITH_OWN_CALL = [
    "tests.middleware.A",
    "tests.middleware.B",
    "tests.middleware.OwnCall",
    "tests.middleware.C",
]


async def _http_events(query: str) -> tuple[int, list[str]]:
    EVENTS.clear()
    response = await AsyncClient(raise_request_exception=False).get(f"/echo/?{query}")
    return response.status_code, list(EVENTS)


def _websocket_events(query: str) -> tuple[int, list[str]]:
    EVENTS.clear()
    client = WebSocketClient(raise_request_exception=False)
    try:
        with client.websocket(f"/echo/?{query}") as ws:
            ws.send("hello")
            assert ws.receive() == "hello"
        status = 101
    except WebSocketRefused as refused:
        status = refused.status_code
    return status, list(EVENTS)


CASES = {
    "": (101, ["a.request", "b.request", "c.request", "c.response 101", "b.response 101",
               "a.response 101"]),
    "b=answer": (409, ["a.request", "b.request", "b.response 409", "a.response 409"]),
    "b=raise": (403, ["a.request", "b.request", "a.response 403"]),
    "c=raise-late": (101, ["a.request", "b.request", "c.request", "c.response 101",
                           "b.response 500", "a.response 500"]),
}  # fmt: skip


@pytest.mark.parametrize("query", list(CASES))
def test_hooks_run_as_in_djangos_own_chain(query):
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        status, events = _websocket_events(query)
        assert (status, events) == CASES[query]
        http_status, http_events = asyncio.run(_http_events(query))
    # The same hooks, in the same order, see the same statuses (HTTP answers 200, not 101;
    # an error on the way out ends an HTTP request with a 500, a WebSocket stays accepted).
    assert [event.replace(" 200", " 101") for event in http_events] == events
    assert http_status == {"": 200, "c=raise-late": 500}.get(query, status)


def test_runs_stop_at_a_middleware_with_its_own_call():
    with override_settings(MIDDLEWARE=WITH_OWN_CALL):
        chain = WebSocketASGIHandler()._websocket_chain
        assert isinstance(chain, FusedMiddleware) and len(chain.layers) == 2
        status, events = _websocket_events("")
    assert status == 101
    assert events == [
        "a.request", "b.request", "own.before", "c.request",
        "c.response 101", "own.after", "b.response 101", "a.response 101",
    ]  # fmt: skip


def test_a_single_middleware_is_left_as_it_is():
    with override_settings(MIDDLEWARE=["tests.middleware.A"]):
        chain = WebSocketASGIHandler()._websocket_chain
    assert not isinstance(chain, FusedMiddleware)
    assert middleware.A  # the module is importable by its path


@pytest.fixture
def request_signals():
    def started(**kwargs):
        EVENTS.append("started " + kwargs["scope"]["type"])

    def finished(**kwargs):
        EVENTS.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    yield
    request_started.disconnect(started)
    request_finished.disconnect(finished)


@pytest.mark.parametrize("chain", [MIDDLEWARE, ["tests.middleware.A"], []])
@pytest.mark.parametrize("query", ["", "b=answer", "c=raise-late"])
def test_the_request_starts_before_every_hook_and_finishes_after_them_once(
    chain, query, request_signals
):
    """request_started and request_finished frame the hooks once, fused into their hops or not."""
    with override_settings(MIDDLEWARE=chain):
        _, events = _websocket_events(query)
    assert events[0] == "started websocket"
    assert events[-1] == "finished"
    assert events.count("started websocket") == 1 and events.count("finished") == 1


def test_a_failing_request_finished_receiver_does_not_change_the_refusal(caplog):
    """As in Django's handler, an error at the end of the request cannot replace the response."""

    def fail(**kwargs):
        raise RuntimeError("receiver failed")

    request_finished.connect(fail)
    try:
        with override_settings(MIDDLEWARE=MIDDLEWARE):
            status, _ = _websocket_events("b=answer")
    finally:
        request_finished.disconnect(fail)
    assert status == 409
    assert "Ending the request of a WebSocket failed" in caplog.text

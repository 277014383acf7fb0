"""The blocking WebSocket facade over an in-memory transport."""

import asyncio
import queue
import threading

import pytest

from django_websocket import ConnectionClosed, WebSocket


class MemoryTransport:
    """A transport whose client side is a queue the test fills."""

    def __init__(self, subprotocol=None):
        self.subprotocol = subprotocol
        self.incoming: queue.SimpleQueue = queue.SimpleQueue()
        self.sent: list = []
        self.close_calls: list = []
        self._closed = False
        self._info = (None, "")

    def client_sends(self, *messages):
        for message in messages:
            self.incoming.put(message)

    def client_closes(self, code=1000, reason=""):
        self._info = (code, reason)
        self.incoming.put(None)

    def receive(self, timeout):
        if self._closed and self.incoming.empty():
            raise ConnectionClosed(*self._info)
        try:
            if timeout is not None and timeout <= 0:
                item = self.incoming.get(block=False)
            else:
                item = self.incoming.get(timeout=timeout)
        except queue.Empty:
            if self._closed:
                raise ConnectionClosed(*self._info) from None
            raise TimeoutError from None
        if item is None:
            self._closed = True
            raise ConnectionClosed(*self._info)
        return item

    def send(self, data):
        if self._closed:
            raise ConnectionClosed(*self._info)
        self.sent.append(data)

    def close(self, code, reason):
        self.close_calls.append((code, reason))
        if not self._closed:
            self._closed = True
            self._info = (code, reason)

    @property
    def closed(self):
        return self._closed

    @property
    def close_info(self):
        return self._info if self._closed else (None, "")


class OpenerEndpoint:
    """An endpoint whose handshake is a function of the subprotocol."""

    def __init__(self, opener):
        self.opener = opener

    def open(self, subprotocol):
        return self.opener(subprotocol)

    async def open_async(self, subprotocol):
        return AsyncMemoryTransport(self.opener(subprotocol))

    def claim_sync_view(self):
        return True


class AsyncMemoryTransport:
    """The awaitable face of a MemoryTransport."""

    def __init__(self, transport):
        self.transport = transport
        self.subprotocol = transport.subprotocol

    def receive_nowait(self):
        return self.transport.receive(0)

    async def receive(self, timeout):
        return await asyncio.to_thread(self.transport.receive, timeout)

    async def send(self, data):
        self.transport.send(data)

    async def close(self, code, reason):
        self.transport.close(code, reason)

    @property
    def closed(self):
        return self.transport.closed

    @property
    def close_info(self):
        return self.transport.close_info


@pytest.fixture
def pair():
    transport = MemoryTransport()
    opened = []

    def opener(subprotocol):
        opened.append(subprotocol)
        transport.subprotocol = subprotocol
        return transport

    return (
        WebSocket(OpenerEndpoint(opener), ["chat.v1", "chat.v2"], max_pending=4),
        transport,
        opened,
    )


def test_the_handshake_waits_for_first_use(pair):
    """Creating the WebSocket sends nothing; the first call accepts, once."""
    websocket, transport, opened = pair
    assert not websocket.accepted and opened == []
    transport.client_sends("hi")
    assert websocket.wait() == "hi"
    websocket.send("x")
    websocket.accept()
    assert opened == [None] and websocket.accepted


def test_the_chosen_subprotocol_is_known_before_the_handshake(pair):
    """protocol is the client's first offer the view supports, before and after accept."""
    websocket, _, opened = pair
    websocket._set_protocols(["chat.v2", "chat.v1"])
    assert websocket.protocol == "chat.v1"
    websocket.accept()
    assert opened == ["chat.v1"] and websocket.protocol == "chat.v1"


def test_protocols_cannot_change_after_the_handshake(pair):
    """Changing subprotocols after accept is a misuse (InvalidState, a RuntimeError)."""
    websocket, _, _ = pair
    websocket.accept()
    with pytest.raises(RuntimeError):
        websocket._set_protocols(["a"])


def test_wait_returns_messages_then_none_once_closed(pair):
    """wait hands out what arrived, then None at once after the close."""
    websocket, transport, _ = pair
    transport.client_sends("a", b"b")
    transport.client_closes(1001, "bye")
    assert [websocket.wait(), websocket.wait(), websocket.wait(), websocket.wait()] == [
        "a",
        b"b",
        None,
        None,
    ]
    assert (websocket.closed, websocket.close_code, websocket.close_reason) == (True, 1001, "bye")


def test_wait_with_a_timeout_raises_timeout_error(pair):
    """wait(timeout) raises TimeoutError when nothing arrives."""
    websocket, _, _ = pair
    with pytest.raises(TimeoutError):
        websocket.wait(timeout=0.01)


def test_read_never_blocks_and_returns_the_fallback(pair):
    """read() returns a waiting message, else the fallback (None by default)."""
    websocket, transport, _ = pair
    assert websocket.read() is None
    assert websocket.read("nothing") == "nothing"
    transport.client_sends("m")
    assert websocket.read("nothing") == "m"


def test_count_and_has_messages_keep_messages_for_later(pair):
    """Counting pulls waiting messages into the queue without losing their order."""
    websocket, transport, _ = pair
    assert websocket.count_messages() == 0 and not websocket.has_messages()
    transport.client_sends("1", "2", "3")
    assert websocket.has_messages()
    assert websocket.count_messages() == 3
    assert [websocket.read(), websocket.wait(), websocket.read()] == ["1", "2", "3"]


def test_count_messages_stops_at_the_queue_bound(pair):
    """count_messages never buffers more than the bound: the rest waits in the transport."""
    websocket, transport, _ = pair
    transport.client_sends(*[str(i) for i in range(10)])
    assert websocket.count_messages() == 4
    assert list(iter(lambda: websocket.read(), None)) == [str(i) for i in range(10)]


def test_iteration_yields_every_message_and_stops_at_close(pair):
    """for message in websocket yields all messages and never yields None."""
    websocket, transport, _ = pair
    transport.client_sends("a", "b")
    transport.client_closes()
    assert list(websocket) == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("text", "text"),
        (b"raw", b"raw"),
        (bytearray(b"ba"), b"ba"),
        (memoryview(b"mv"), b"mv"),
        (42, "42"),
        (None, "None"),
        (["x"], "['x']"),
    ],
)
def test_send_turns_values_into_text_or_binary(pair, value, sent):
    """str and bytes go as they are, bytes-likes as bytes, anything else through str()."""
    websocket, transport, _ = pair
    websocket.send(value)
    assert transport.sent == [sent]


def test_json_helpers_round_trip(pair):
    """send_json writes compact JSON; wait_json decodes, None once closed."""
    websocket, transport, _ = pair
    websocket.send_json({"a": "é"})
    assert transport.sent == ['{"a":"é"}']
    transport.client_sends('{"b": [1]}')
    transport.client_closes()
    assert websocket.wait_json() == {"b": [1]}
    assert websocket.wait_json() is None


def test_send_after_close_raises_connection_closed(pair):
    """send() on a closed connection raises ConnectionClosed with the code."""
    websocket, transport, _ = pair
    transport.client_closes(1001)
    assert websocket.wait() is None
    with pytest.raises(ConnectionClosed) as closed:
        websocket.send("late")
    assert closed.value.code == 1001


def test_close_before_accept_refuses_and_never_opens(pair):
    """close() before the handshake refuses: nothing is opened, receiving gives None."""
    websocket, _, opened = pair
    websocket.close(4003, "no")
    assert websocket.refused and websocket.closed and not websocket.accepted
    assert (websocket.close_code, websocket.close_reason) == (4003, "no")
    assert (
        websocket.wait() is None and websocket.read("f") == "f" and websocket.count_messages() == 0
    )
    with pytest.raises(ConnectionClosed):
        websocket.send("x")
    websocket.accept()
    assert opened == []


def test_close_after_accept_closes_the_transport(pair):
    """close(code, reason) reaches the transport; the state follows."""
    websocket, transport, _ = pair
    assert websocket.close_code is None and websocket.close_reason is None
    websocket.accept()
    assert not websocket.closed
    websocket.close(4001, "done")
    assert transport.close_calls == [(4001, "done")]
    assert (websocket.closed, websocket.close_code, websocket.close_reason) == (True, 4001, "done")


def test_a_client_gone_during_the_handshake_reads_as_closed():
    """An OSError during the handshake leaves a closed WebSocket with code 1006."""

    def opener(subprotocol):
        raise ConnectionResetError

    websocket = WebSocket(OpenerEndpoint(opener))
    assert websocket.wait() is None
    assert websocket.close_code == 1006 and not websocket.accepted


def test_accept_happens_once_under_concurrent_first_use():
    """Two threads using a fresh WebSocket at once open it once."""
    transport = MemoryTransport()
    calls = []
    gate = threading.Barrier(2)

    def opener(subprotocol):
        calls.append(1)
        return transport

    websocket = WebSocket(OpenerEndpoint(opener))

    def first_use():
        gate.wait()
        websocket.send("x")

    threads = [threading.Thread(target=first_use) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1] and transport.sent == ["x", "x"]


@pytest.fixture
def async_pair(pair):
    websocket, transport, opened = pair
    return websocket.to_async(), transport, opened


def test_async_the_handshake_waits_for_first_use_and_polls_do_not_accept(async_pair):
    """AsyncWebSocket accepts on the first await; read/count/has report nothing before."""
    websocket, transport, opened = async_pair

    async def scenario():
        assert websocket.read("none") == "none" and websocket.count_messages() == 0
        assert not websocket.has_messages() and opened == []
        transport.client_sends("hi")
        assert await websocket.wait() == "hi"
        assert opened == [None] and websocket.accepted

    asyncio.run(scenario())


def test_async_messages_then_none_after_the_close_and_iteration_stops(async_pair):
    """Queued messages are handed out before None; async for ends at the close."""
    websocket, transport, _ = async_pair

    async def scenario():
        await websocket.accept()
        transport.client_sends("a", b"b", "c")
        transport.client_closes(4000, "bye")
        assert websocket.count_messages() == 3 and websocket.has_messages()
        assert websocket.read() == "a"
        assert [message async for message in websocket] == [b"b", "c"]
        assert await websocket.wait() is None
        assert (websocket.close_code, websocket.close_reason) == (4000, "bye")

    asyncio.run(scenario())


def test_async_send_types_json_and_timeout(async_pair):
    """send maps types like WebSocket.send; wait_json decodes; wait(timeout) raises."""
    websocket, transport, _ = async_pair

    async def scenario():
        await websocket.send("t")
        await websocket.send(bytearray(b"b"))
        await websocket.send(3)
        await websocket.send_json({"a": [1]})
        assert transport.sent == ["t", b"b", "3", '{"a":[1]}']
        transport.client_sends('{"x": null, "y": 2}')
        assert await websocket.wait_json() == {"x": None, "y": 2}
        with pytest.raises(TimeoutError):
            await websocket.wait(0.05)

    asyncio.run(scenario())


def test_async_close_before_accept_refuses_and_send_raises(async_pair):
    """Closing before the handshake refuses it; send then raises ConnectionClosed."""
    websocket, _, opened = async_pair

    async def scenario():
        await websocket.close(4003, "no")
        assert websocket.refused and not websocket.accepted and opened == []
        assert await websocket.wait() is None
        with pytest.raises(ConnectionClosed):
            await websocket.send("x")
        assert (websocket.close_code, websocket.close_reason) == (4003, "no")

    asyncio.run(scenario())

"""Groups with the in-memory broker, in process: join, leave, broadcast, exclude, presence.

The tests open connections with our own test client (django_websocket.test) to
the room views of tests/views.py and their async twins, so both WebSocket APIs
and the event-loop delivery path are covered without a server; one test drives
the ASGI application by hand (tests/clients.Session) to stall a member's sends.
Real servers (every transport) are in test_servers.py, Redis across processes
in test_groups_redis.py.
"""

import asyncio
import threading

import pytest
from django.contrib.auth.models import User
from django.test import TestCase, override_settings

from django_websocket import (
    ConnectionClosed,
    broadcast,
    broadcast_json,
    broadcast_to_user,
    group_size,
)
from django_websocket.groups import get_hub, reset_hub
from django_websocket.test import WebSocketClient

from .clients import Session, websocket_scope
from .conftest import timeout

VIEWS = ["", "/async"]


@pytest.fixture(autouse=True)
def fresh_hub():
    """Every test starts with an empty in-memory hub."""
    reset_hub()
    yield
    reset_hub()


def joined(client, prefix, room="lobby"):
    """Open a room connection and wait until it has joined (the caller closes it)."""
    session = client.websocket(f"{prefix}/room/{room}/").__enter__()
    assert session.receive() == f"in {room}"
    return session


@pytest.mark.parametrize("prefix", VIEWS)
def test_a_broadcast_reaches_every_member_but_the_excluded_sender(prefix):
    """say: goes to the other members; the sender, excluded, gets nothing."""
    client = WebSocketClient()
    alice, bob, carol = [joined(client, prefix) for _ in range(3)]
    alice.send("say:hello")
    assert bob.receive() == "hello"
    assert carol.receive() == "hello"
    assert alice.receive_nothing(0.2)
    for member in (alice, bob, carol):
        member.close()


@pytest.mark.parametrize("prefix", VIEWS)
def test_text_binary_and_json_arrive_as_they_were_broadcast(prefix):
    """str arrives as text, bytes as binary, broadcast_json as JSON text."""
    client = WebSocketClient()
    alice, bob = joined(client, prefix), joined(client, prefix)
    alice.send("bytes:raw")
    assert bob.receive() == b"raw"
    alice.send("json:héllo")
    assert bob.receive_json() == {"text": "héllo"}
    alice.send("all:everyone")
    assert alice.receive() == "everyone"
    assert bob.receive() == "everyone"
    alice.close()
    bob.close()


@pytest.mark.parametrize("prefix", VIEWS)
def test_messages_from_one_sender_arrive_in_order(prefix):
    """count:N broadcasts 0..N-1; every member gets them all, in order."""
    client = WebSocketClient()
    alice, bob = joined(client, prefix), joined(client, prefix)
    alice.send("count:200")
    for member in (alice, bob):
        assert [member.receive() for _ in range(200)] == [str(n) for n in range(200)]
    alice.close()
    bob.close()


@pytest.mark.parametrize("prefix", VIEWS)
def test_a_member_that_left_gets_nothing_more(prefix):
    """After leave, broadcasts to the room skip the connection; groups says so."""
    client = WebSocketClient()
    alice, bob = joined(client, prefix), joined(client, prefix)
    bob.send("join:news")
    assert bob.receive() == "joined"
    bob.send("groups")
    assert bob.receive_json() == ["lobby", "news"]
    bob.send("leave:lobby")
    assert bob.receive() == "left"
    bob.send("groups")
    assert bob.receive_json() == ["news"]
    alice.send("say:anyone?")
    assert bob.receive_nothing(0.2)
    alice.close()
    bob.close()


@pytest.mark.parametrize("prefix", VIEWS)
def test_group_size_counts_members_and_drops_closed_connections(prefix):
    """group_size follows joins, leaves and disconnections."""
    client = WebSocketClient()
    members = [joined(client, prefix) for _ in range(3)]
    members[0].send("size")
    assert members[0].receive() == "3"
    members[2].close()
    members[1].send("leave")
    assert members[1].receive() == "left"
    members[0].send("size")
    assert members[0].receive() == "1"
    members[0].close()
    members[1].close()
    assert group_size("lobby") == 0


def test_a_broadcast_from_outside_any_connection_reaches_the_members():
    """broadcast() from another thread (a task, a signal receiver) reaches both APIs."""
    client = WebSocketClient()
    sync_member, async_member = joined(client, ""), joined(client, "/async")
    thread = threading.Thread(target=broadcast, args=("lobby", "from a thread"))
    thread.start()
    thread.join()
    assert sync_member.receive() == "from a thread"
    assert async_member.receive() == "from a thread"
    broadcast_json("lobby", [1, 2])
    assert async_member.receive() == "[1,2]"
    sync_member.close()
    async_member.close()


def test_invalid_group_names_and_message_types_are_refused():
    """A group name outside the allowed characters is a ValueError, a dict a TypeError."""
    for name in ("", "a b", "x" * 151, "@user:1", "é\n"):
        with pytest.raises(ValueError, match="invalid group name"):
            broadcast(name, "hi")
    with pytest.raises(TypeError, match="broadcast_json"):
        broadcast("room", {"not": "text"})


async def text_of(session: Session) -> str | bytes:
    event = await session.output()
    assert event["type"] == "websocket.send", event
    return event["text"] if event.get("text") is not None else event["bytes"]


class StalledSend:
    """An ASGI send that stops completing after ``after`` messages: a client that stopped
    reading, as the server's flow control shows it."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.sent: list[dict] = []
        self.release = asyncio.Event()

    async def __call__(self, message):
        if message["type"] == "websocket.send" and len(self.sent) >= self.after:
            await self.release.wait()
        self.sent.append(message)


@pytest.mark.parametrize("prefix", VIEWS)
@override_settings(WEBSOCKET_GROUP_QUEUE=8)
def test_a_member_that_does_not_read_is_closed_with_1013_and_the_others_get_everything(
    prefix, caplog
):
    """A member that stays over WEBSOCKET_GROUP_QUEUE waiting messages closes (1013)."""

    async def scenario():
        fast = Session(websocket_scope(f"{prefix}/room/lobby/"))
        assert (await fast.output())["type"] == "websocket.accept"
        assert await text_of(fast) == "in lobby"
        stuck_send = StalledSend(after=2)  # the accept and "in lobby" go through
        stuck = Session.__new__(Session)
        stuck.to_app, stuck.from_app = asyncio.Queue(), asyncio.Queue()
        stuck.to_app.put_nowait({"type": "websocket.connect"})
        from .clients import application

        task = asyncio.ensure_future(
            application(websocket_scope(f"{prefix}/room/lobby/"), stuck.to_app.get, stuck_send)
        )
        while len(stuck_send.sent) < 2:
            await asyncio.sleep(0.01)
        for number in range(40):  # a burst: over the limit for a moment is fine
            broadcast("lobby", str(number))
        assert [await text_of(fast) for _ in range(40)] == [str(n) for n in range(40)]
        await asyncio.sleep(1.1)  # the stuck member stays over the limit
        broadcast("lobby", "40")
        assert await text_of(fast) == "40"
        stuck_send.release.set()  # the client reads again: it finds the close frame
        await asyncio.wait_for(task, timeout(5))
        closes = [m for m in stuck_send.sent if m["type"] == "websocket.close"]
        assert closes and closes[0]["code"] == 1013
        assert len(stuck_send.sent) < 2 + 40
        await fast.disconnect()

    asyncio.run(scenario())
    assert "with 1013" in caplog.text


class Users(TestCase):
    """A logged-in connection is its user's; a logout closes the session's connections."""

    client_class = WebSocketClient

    def setUp(self):
        reset_hub()
        self.ada = User.objects.create(username="ada")

    def test_broadcast_to_user_reaches_the_user_and_logout_closes_with_1008(self):
        for prefix in VIEWS:
            with self.subTest(prefix=prefix):
                anonymous = joined(WebSocketClient(), prefix)
                self.client.force_login(self.ada)
                member = joined(self.client, prefix)
                broadcast_to_user(self.ada, "for ada")
                self.assertEqual(member.receive(), "for ada")
                self.assertTrue(anonymous.receive_nothing(0.2))
                self.client.logout()  # user_logged_out, with this client's session
                with self.assertRaises(ConnectionClosed):
                    member.receive()
                self.assertEqual(member.close_code, 1008)
                self.assertTrue(anonymous.receive_nothing(0.2))
                anonymous.close()

    def test_a_logout_in_another_browser_leaves_the_connection_open(self):
        self.client.force_login(self.ada)
        member = joined(self.client, "")
        other_browser = WebSocketClient()
        other_browser.force_login(self.ada)
        other_browser.logout()
        self.assertTrue(member.receive_nothing(0.5))
        member.send("whoami")
        self.assertTrue(member.receive().endswith(" ada"))
        member.close()


def test_the_hub_forgets_connections_that_ended():
    """After every connection closed, no group keeps a member in this process."""
    client = WebSocketClient()
    for prefix in VIEWS:
        joined(client, prefix, room="ephemeral").close()
    assert get_hub().local_count("ephemeral") == 0

"""Groups with the in-memory broker, in process: join, leave, broadcast, exclude, presence.

Each test drives our ASGI application directly (tests/clients.Session) with the
room views of tests/views.py and their async twins, so both WebSocket APIs and
the event-loop delivery path are covered without a server. Real servers (every
transport) are in test_groups_servers.py, Redis across processes in
test_groups_redis.py.
"""

import asyncio
import json
import threading

import pytest
from django.contrib.auth.signals import user_logged_out
from django.test import override_settings

from django_websocket import broadcast, broadcast_json, group_size
from django_websocket.groups import get_hub, reset_hub

from .clients import Session, websocket_scope
from .conftest import timeout

VIEWS = ["", "/async"]


@pytest.fixture(autouse=True)
def fresh_hub():
    """Every test starts with an empty in-memory hub."""
    reset_hub()
    yield
    reset_hub()


async def joined(prefix: str, room: str = "lobby", **scope) -> Session:
    """Open a room connection and wait until it has joined."""
    session = Session(websocket_scope(f"{prefix}/room/{room}/", **scope))
    assert (await session.output())["type"] == "websocket.accept"
    assert await text_of(session) == f"in {room}"
    return session


async def text_of(session: Session) -> str | bytes:
    event = await session.output()
    assert event["type"] == "websocket.send", event
    return event["text"] if event.get("text") is not None else event["bytes"]


async def silent(session: Session, wait: float = 0.2) -> bool:
    """Whether nothing arrives for ``wait`` seconds."""
    try:
        event = await asyncio.wait_for(session.from_app.get(), wait)
    except TimeoutError:
        return True
    session.from_app.put_nowait(event)
    return False


@pytest.mark.parametrize("prefix", VIEWS)
def test_a_broadcast_reaches_every_member_but_the_excluded_sender(prefix):
    """say: goes to the other members; the sender, excluded, gets nothing."""

    async def scenario():
        alice, bob, carol = [await joined(prefix) for _ in range(3)]
        await alice.send_text("say:hello")
        assert await text_of(bob) == "hello"
        assert await text_of(carol) == "hello"
        assert await silent(alice)
        for session in (alice, bob, carol):
            await session.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("prefix", VIEWS)
def test_text_binary_and_json_arrive_as_they_were_broadcast(prefix):
    """str arrives as text, bytes as binary, broadcast_json as JSON text."""

    async def scenario():
        alice, bob = await joined(prefix), await joined(prefix)
        await alice.send_text("bytes:raw")
        assert await text_of(bob) == b"raw"
        await alice.send_text("json:héllo")
        assert json.loads(await text_of(bob)) == {"text": "héllo"}
        await alice.send_text("all:everyone")
        assert await text_of(alice) == "everyone"
        assert await text_of(bob) == "everyone"
        await alice.disconnect()
        await bob.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("prefix", VIEWS)
def test_messages_from_one_sender_arrive_in_order(prefix):
    """count:N broadcasts 0..N-1; every member gets them all, in order."""

    async def scenario():
        alice, bob = await joined(prefix), await joined(prefix)
        await alice.send_text("count:200")
        for session in (alice, bob):
            assert [await text_of(session) for _ in range(200)] == [str(n) for n in range(200)]
        await alice.disconnect()
        await bob.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("prefix", VIEWS)
def test_a_member_that_left_gets_nothing_more(prefix):
    """After leave, broadcasts to the room skip the connection; groups says so."""

    async def scenario():
        alice, bob = await joined(prefix), await joined(prefix)
        await bob.send_text("join:news")
        assert await text_of(bob) == "joined"
        await bob.send_text("groups")
        assert json.loads(await text_of(bob)) == ["lobby", "news"]
        await bob.send_text("leave:lobby")
        assert await text_of(bob) == "left"
        await bob.send_text("groups")
        assert json.loads(await text_of(bob)) == ["news"]
        await alice.send_text("say:anyone?")
        assert await silent(bob)
        await alice.disconnect()
        await bob.disconnect()

    asyncio.run(scenario())


@pytest.mark.parametrize("prefix", VIEWS)
def test_group_size_counts_members_and_drops_closed_connections(prefix):
    """group_size follows joins, leaves and disconnections."""

    async def scenario():
        sessions = [await joined(prefix) for _ in range(3)]
        await sessions[0].send_text("size")
        assert await text_of(sessions[0]) == "3"
        await sessions[2].disconnect()
        await sessions[1].send_text("leave")
        assert await text_of(sessions[1]) == "left"
        await sessions[0].send_text("size")
        assert await text_of(sessions[0]) == "1"
        await sessions[0].disconnect()
        await sessions[1].disconnect()

    asyncio.run(scenario())
    assert group_size("lobby") == 0


def test_a_broadcast_from_outside_any_connection_reaches_the_members():
    """broadcast() from another thread (a task, a signal receiver) reaches both APIs."""

    async def scenario():
        sync_member, async_member = await joined(""), await joined("/async")
        thread = threading.Thread(target=broadcast, args=("lobby", "from a thread"))
        thread.start()
        thread.join()
        assert await text_of(sync_member) == "from a thread"
        assert await text_of(async_member) == "from a thread"
        broadcast_json("lobby", [1, 2])  # from the event loop's own thread
        assert await text_of(async_member) == "[1,2]"
        await sync_member.disconnect()
        await async_member.disconnect()

    asyncio.run(scenario())


def test_invalid_group_names_and_message_types_are_refused():
    """A group name outside the allowed characters is a ValueError, a dict a TypeError."""
    for name in ("", "a b", "x" * 151, "@user:1", "é\n"):
        with pytest.raises(ValueError, match="invalid group name"):
            broadcast(name, "hi")
    with pytest.raises(TypeError, match="broadcast_json"):
        broadcast("room", {"not": "text"})


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
        fast = await joined(prefix)
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


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("prefix", VIEWS)
def test_a_logged_in_connection_is_reachable_as_its_user_and_closes_on_logout(prefix, client):
    """broadcast_to_user reaches the user's connections; user_logged_out closes them (1008)."""
    from django.contrib.auth.models import User

    from django_websocket import broadcast_to_user

    user = User.objects.create(username="ada")
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    session_key = client.session.session_key

    async def scenario():
        member = await joined(prefix, headers=[(b"host", b"127.0.0.1"), (b"cookie", cookie)])
        anonymous = await joined(prefix)
        await asyncio.to_thread(broadcast_to_user, user, "for ada")
        assert await text_of(member) == "for ada"
        assert await silent(anonymous)

        class LoggingOut:  # the request of the logout, before its session is flushed
            session = type("S", (), {"session_key": session_key})()

        await asyncio.to_thread(user_logged_out.send, sender=User, request=LoggingOut(), user=user)
        close = await member.output()
        assert close["type"] == "websocket.close" and close["code"] == 1008
        assert await silent(anonymous)
        await member.disconnect()
        await anonymous.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_logout_of_another_session_leaves_the_connection_open(client):
    """Only the connections opened with the session that logs out are closed."""
    from django.contrib.auth.models import User

    user = User.objects.create(username="grace")
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario():
        member = await joined("", headers=[(b"host", b"127.0.0.1"), (b"cookie", cookie)])

        class OtherSession:
            session = type("S", (), {"session_key": "another-browser"})()

        await asyncio.to_thread(
            user_logged_out.send, sender=User, request=OtherSession(), user=user
        )
        assert await silent(member, 0.5)
        await member.send_text("whoami")
        assert (await text_of(member)).endswith(" grace")
        await member.disconnect()

    asyncio.run(scenario())


def test_the_hub_forgets_connections_that_ended():
    """After every connection closed, no group keeps a member in this process."""

    async def scenario():
        for prefix in VIEWS:
            session = await joined(prefix, room="ephemeral")
            await session.disconnect()

    asyncio.run(scenario())
    assert get_hub().local_count("ephemeral") == 0

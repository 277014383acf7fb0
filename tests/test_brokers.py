"""The Redis broker against a real Redis: two hubs in one process stand for two processes.

Members here are recorders standing in for connections (the transports' own
delivery is tested with real servers in test_groups_servers.py); the broker,
its threads and Redis are the real ones.
"""

import contextlib
import logging
import threading
import time

import pytest

from django_websocket.brokers import RedisBroker, redacted_url
from django_websocket.delivery import Envelope, pack
from django_websocket.exceptions import BrokerUnavailable
from django_websocket.groups import Hub, Membership, new_connection_id

from .conftest import timeout
from .redis_support import REDIS_URL, PrivateRedis, delete_prefix, require_redis, unique_prefix


class Recorder:
    """A member's transport that records what it is given (from any thread)."""

    delivery_loop = None

    def __init__(self) -> None:
        self.messages: list = []
        self.kicked: tuple[int, str] | None = None
        self.arrived = threading.Condition()

    def deliver(self, message) -> None:
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def kick(self, code: int, reason: str) -> None:
        with self.arrived:
            self.kicked = (code, reason)
            self.arrived.notify_all()

    def add_close_callback(self, callback) -> None:
        pass

    def wait_for(self, count: int, wait: float = 5.0) -> list:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout(wait)), (
                self.messages
            )
            return list(self.messages)


def member(session: str = "") -> tuple[Membership, Recorder]:
    recorder = Recorder()
    return Membership(new_connection_id(), recorder, session), recorder


def redis_hub(url: str, prefix: str, presence_timeout: float = 15.0) -> Hub:
    def make_broker(hub: Hub) -> RedisBroker:
        return RedisBroker(
            url,
            prefix,
            on_message=hub.fan_out,
            local_count=hub.local_count,
            presence_timeout=presence_timeout,
            timeout=2.0,
        )

    return Hub(make_broker)


@pytest.fixture
def prefix():
    require_redis()
    prefix = unique_prefix()
    yield prefix
    delete_prefix(REDIS_URL, prefix)


@pytest.fixture
def two_processes(prefix):
    """Two hubs on the shared Redis, as two processes would have."""
    hubs = [redis_hub(REDIS_URL, prefix), redis_hub(REDIS_URL, prefix)]
    yield hubs
    for hub in hubs:
        hub.broker.close()


def publish(hub: Hub, group: str, message, exclude=frozenset()) -> None:
    hub.broker.publish(group, pack(Envelope(message, frozenset(exclude))))


def test_a_message_reaches_the_members_in_every_process_in_order(two_processes):
    """500 messages published in one process arrive in order in both, none lost."""
    first, second = two_processes
    (a, a_got), (b, b_got) = member(), member()
    first.join(a, "room")
    second.join(b, "room")
    for number in range(500):
        publish(first, "room", str(number))
    publish(second, "room", b"\x00binary")
    expected = [str(n) for n in range(500)] + [b"\x00binary"]
    assert a_got.wait_for(501) == expected
    assert b_got.wait_for(501) == expected


def test_excluded_and_departed_members_get_nothing(two_processes):
    """exclude skips a member wherever it lives; a member that left gets nothing more."""
    first, second = two_processes
    (a, a_got), (b, b_got), (c, c_got) = member(), member(), member()
    first.join(a, "room")
    second.join(b, "room")
    second.join(c, "room")
    publish(first, "room", "not for b", exclude={b.id})
    assert c_got.wait_for(1) == ["not for b"]
    second.leave(c, "room")
    publish(first, "room", "after c left")
    assert a_got.wait_for(2) == ["not for b", "after c left"]
    assert b_got.wait_for(1) == ["after c left"]
    time.sleep(0.2)
    assert c_got.messages == ["not for b"]


def test_group_size_counts_members_across_processes(two_processes):
    """group_size sums every process's members, and follows leaves."""
    first, second = two_processes
    members = [member()[0] for _ in range(5)]
    for index, each in enumerate(members):
        (first if index % 2 else second).join(each, "counted")
    assert first.broker.group_size("counted") == 5
    second.leave_all(members[0])
    deadline = time.monotonic() + timeout(5)
    while first.broker.group_size("counted") != 4:
        assert time.monotonic() < deadline, "a leave was never counted"
        time.sleep(0.02)


def test_a_process_that_stops_beating_drops_out_of_the_count(prefix):
    """A process that vanishes without a goodbye is no longer counted once its heartbeat
    expires."""
    survivor = redis_hub(REDIS_URL, prefix, presence_timeout=0.6)
    doomed = redis_hub(REDIS_URL, prefix, presence_timeout=0.6)
    try:
        survivor.join(member()[0], "beat")
        doomed.join(member()[0], "beat")
        assert survivor.broker.group_size("beat") == 2
        # A killed process: its threads stop, nothing is cleaned up.
        doomed.broker._stopped.set()
        doomed.broker._jobs.put(None)
        doomed.broker._writer.join()
        time.sleep(1.0)
        assert survivor.broker.group_size("beat") == 1
    finally:
        survivor.broker.close()
        doomed.broker.close()


def test_a_logout_closes_only_that_sessions_members(two_processes):
    """A close envelope with a session hash kicks only the members opened with it."""
    first, second = two_processes
    (same, same_got), (other, other_got) = member("s1"), member("s2")
    second.join(same, "@user:7")
    second.join(other, "@user:7")
    first.broker.publish("@user:7", pack(Envelope("logged out", close_code=1008, session="s1")))
    with same_got.arrived:
        assert same_got.arrived.wait_for(lambda: same_got.kicked, timeout(5))
    assert same_got.kicked == (1008, "logged out")
    time.sleep(0.2)
    assert other_got.kicked is None


def test_publishing_while_redis_is_unreachable_raises_at_once(prefix):
    """broadcast to a Redis that is not there raises BrokerUnavailable quickly, no hang."""
    port = PrivateRedis().port  # nothing listens there
    hub = redis_hub(f"redis://:secret@127.0.0.1:{port}/0", prefix)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=r"unreachable") as raised:
            publish(hub, "room", "lost")
        assert time.monotonic() - started < 2.5
        assert "secret" not in str(raised.value)
        with pytest.raises(BrokerUnavailable):
            hub.broker.group_size("room")
    finally:
        hub.broker.close()


def test_redacted_urls_hide_passwords_only():
    """Logs and errors name the Redis server without its password."""
    assert redacted_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted_url("redis://user:pw@host/1") == "redis://user:***@host/1"
    assert redacted_url("redis://host:6379/0") == "redis://host:6379/0"


def test_after_redis_restarts_the_broker_resubscribes_and_delivery_resumes(prefix, caplog):
    """Redis killed and started again: publish fails meanwhile, then members get messages
    again and presence is rewritten, with the loss and the recovery logged."""
    caplog.set_level(logging.INFO, logger="django_websocket.broker")
    redis_server = PrivateRedis()
    redis_server.start()
    hubs = [redis_hub(redis_server.url, prefix, presence_timeout=1.5) for _ in range(2)]
    try:
        (a, a_got), (b, b_got) = member(), member()
        hubs[0].join(a, "room")
        hubs[1].join(b, "room")
        publish(hubs[0], "room", "before")
        assert b_got.wait_for(1) == ["before"]

        redis_server.stop()
        with pytest.raises(BrokerUnavailable):
            publish(hubs[0], "room", "during")
        redis_server.start()

        deadline = time.monotonic() + timeout(15)
        while len(b_got.messages) < 2:
            assert time.monotonic() < deadline, "delivery never resumed after the restart"
            with contextlib.suppress(BrokerUnavailable):
                publish(hubs[0], "room", "after")
            time.sleep(0.2)
        assert b_got.messages[1] == "after" and a_got.wait_for(2)[1] == "after"
        assert "during" not in b_got.messages
        deadline = time.monotonic() + timeout(5)
        while hubs[0].broker.group_size("room") != 2:
            assert time.monotonic() < deadline, "presence was not rewritten"
            time.sleep(0.1)
        assert "lost" in caplog.text and "reconnected" in caplog.text
    finally:
        for hub in hubs:
            hub.broker.close()
        redis_server.stop()

"""Brokers: how a group message reaches the other processes.

A broker links the processes of a deployment. Each process keeps its own
members per group (:mod:`django_websocket.groups`); the broker carries a
published message to every process that has members in the group, once, and
that process fans it out to its members. Two brokers:

* :class:`MemoryBroker`, the default: one process, nothing to install. A
  published message goes straight to this process's members.
* :class:`RedisBroker` (``WEBSOCKET_BROKER_URL = "redis://..."``): one Redis
  pub/sub subscription per process per group with local members, through
  redis-py. Presence (how many connections a group has in every process) lives
  in Redis too, refreshed by a heartbeat, so a process that dies stops being
  counted once its heartbeat expires.

Redis pub/sub delivers at most once: a message published while a process is
disconnected from Redis does not reach that process's members. The broker
reconnects with backoff, resubscribes, rewrites its presence, and logs both
the loss and the recovery; :meth:`RedisBroker.publish` raises
:class:`~django_websocket.exceptions.BrokerUnavailable` at once (bounded by
``WEBSOCKET_BROKER_TIMEOUT``) instead of hanging while Redis is down.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from .exceptions import BrokerUnavailable

if TYPE_CHECKING:
    import redis

__all__ = ["Broker", "MemoryBroker", "RedisBroker", "redacted_url"]

logger = logging.getLogger("django_websocket.broker")

#: Called with (group, packed envelope) for each message that reaches this process.
OnMessage = Callable[[str, bytes], None]
#: Returns how many members a group has in this process.
LocalCount = Callable[[str], int]


class Broker(Protocol):
    """What :mod:`django_websocket.groups` needs from a broker."""

    def subscribe(self, group: str) -> None:
        """Receive the group's messages from now on; return once that holds."""

    def unsubscribe(self, group: str) -> None:
        """Stop receiving the group's messages (the last local member left); never waits."""

    def presence_changed(self, group: str, wait: bool) -> None:
        """Record this process's member count of ``group``; with ``wait``, once recorded."""

    def publish(self, group: str, data: bytes) -> None:
        """Send a packed envelope to every process with members in ``group``."""

    def group_size(self, group: str) -> int:
        """Count the live members of ``group`` in every process."""

    def close(self) -> None:
        """Stop the broker's threads and connections (tests, process exit)."""


class MemoryBroker:
    """The broker of a single process: publishing is delivering."""

    def __init__(self, on_message: OnMessage, local_count: LocalCount) -> None:
        self._on_message = on_message
        self._local_count = local_count

    def subscribe(self, group: str) -> None:
        """Nothing to do: every message is local."""

    def unsubscribe(self, group: str) -> None:
        """Nothing to do: every message is local."""

    def presence_changed(self, group: str, wait: bool) -> None:
        """Nothing to record: the members are all here."""

    def publish(self, group: str, data: bytes) -> None:
        """Hand the message to this process's members of ``group``."""
        self._on_message(group, data)

    def group_size(self, group: str) -> int:
        """Count this process's members of ``group``."""
        return self._local_count(group)

    def close(self) -> None:
        """Nothing to release."""


def redacted_url(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


# Presence, in Redis: "<prefix>alive" is a sorted set of process ids scored by the
# time (Redis' own clock, ms) their heartbeat expires; "<prefix>presence:<group>"
# is a hash of process id -> member count. Counting skips (and prunes) processes
# whose heartbeat expired, so a process killed with its members is counted for at
# most WEBSOCKET_PRESENCE_TIMEOUT seconds.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# KEYS: alive, presence:<group>...   ARGV: process id, ttl ms, count per group...
_WRITE_PRESENCE = (
    _NOW
    + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
for i = 2, #KEYS do
  local count = tonumber(ARGV[i + 1])
  if count > 0 then
    redis.call('HSET', KEYS[i], ARGV[1], count)
    redis.call('PEXPIRE', KEYS[i], 2 * tonumber(ARGV[2]))
  else
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return now
"""
)
# KEYS: alive, presence:<group>
_GROUP_SIZE = (
    _NOW
    + """
local fields = redis.call('HGETALL', KEYS[2])
local total = 0
for i = 1, #fields, 2 do
  local expires = redis.call('ZSCORE', KEYS[1], fields[i])
  if expires and tonumber(expires) > now then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[2], fields[i])
  end
end
return total
"""
)
# KEYS: alive, presence:<group>...   ARGV: process id
_FORGET_PROCESS = """
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('HDEL', KEYS[i], ARGV[1]) end
"""

_PRESENCE, _UNSUBSCRIBE, _FLUSH = "presence", "unsubscribe", "flush"
#: (action, group, event set once done)
_Job = tuple[str, str, threading.Event | None]

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0


class RedisBroker:
    """Groups across processes and machines through one Redis server.

    Each process holds two connections to Redis besides its publishing pool:
    one pub/sub connection read by a listener thread, which fans messages out
    to local members, and the presence writer's. Both threads are daemons.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        on_message: OnMessage,
        local_count: LocalCount,
        presence_timeout: float,
        timeout: float,
    ) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:  # pragma: no cover - the extra is part of the test install
            raise BrokerUnavailable(
                "WEBSOCKET_BROKER_URL names Redis but redis-py is not installed: "
                "pip install 'django-websocket[redis]'"
            ) from None
        self._redis = redis
        self.url = redacted_url(url)
        self._prefix = prefix
        self._on_message = on_message
        self._local_count = local_count
        self._ttl_ms = max(1, int(presence_timeout * 1000))
        self._heartbeat = presence_timeout / 3
        self._timeout = timeout
        self.process_id = uuid.uuid4().hex[:16]
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
        }
        # One quick retry: a pooled connection that Redis dropped (a restart) is
        # replaced at once; Redis down fails fast rather than backing off for seconds.
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout, retry=Retry(NoBackoff(), 1), **options
        )
        # The pub/sub connection reports every failure to the listener, which owns
        # reconnecting: a silent retry inside redis-py would lose the resubscription.
        self._listen_client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)
        self._write_presence = self._client.register_script(_WRITE_PRESENCE)
        self._count_presence = self._client.register_script(_GROUP_SIZE)
        self._forget_process = self._client.register_script(_FORGET_PROCESS)
        self._lock = threading.Lock()
        self._wanted: set[str] = set()
        self._confirmations: dict[str, list[threading.Event]] = {}
        self._pubsub: redis.client.PubSub | None = None
        self._connected = threading.Event()
        # Set while Redis is known to be unreachable: joins then do not wait for it.
        self._outage = threading.Event()
        self._stopped = threading.Event()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._listener = threading.Thread(target=self._listen, name="djws-redis", daemon=True)
        self._writer = threading.Thread(target=self._run_jobs, name="djws-redis-jobs", daemon=True)
        self._listener.start()
        self._writer.start()

    # ---- names -------------------------------------------------------------------------

    def _channel(self, group: str) -> str:
        return f"{self._prefix}group:{group}"

    def _group_of(self, channel: bytes | str) -> str:
        name = channel.decode() if isinstance(channel, bytes) else channel
        return name[len(self._prefix) + len("group:") :]

    def _presence_key(self, group: str) -> str:
        return f"{self._prefix}presence:{group}"

    @property
    def _alive_key(self) -> str:
        return f"{self._prefix}alive"

    # ---- subscriptions -----------------------------------------------------------------

    def subscribe(self, group: str) -> None:
        """Subscribe this process to ``group`` and wait for Redis to confirm it.

        While Redis is unreachable this returns at once: the listener subscribes
        when it reconnects, and messages published meanwhile are lost.
        """
        confirmed = threading.Event()
        with self._lock:
            self._wanted.add(group)
            self._confirmations.setdefault(group, []).append(confirmed)
            # Before it is connected, the listener subscribes to every wanted group.
            pubsub = self._pubsub if self._connected.is_set() else None
        if pubsub is not None:
            try:
                pubsub.subscribe(self._channel(group))
            except self._redis.RedisError:
                return  # the listener sees the failure too, reconnects and resubscribes
        elif self._outage.is_set():
            return
        if not confirmed.wait(self._timeout) and not self._outage.is_set():
            logger.warning("Redis at %s did not confirm the subscription to %r", self.url, group)

    def unsubscribe(self, group: str) -> None:
        """Stop receiving ``group``'s messages, unless a member joins again meanwhile.

        Never waits: the unsubscription is sent by the broker's writer thread, so
        a connection closing on an event loop does not block it.
        """
        with self._lock:
            self._wanted.discard(group)
        self._jobs.put((_UNSUBSCRIBE, group, None))

    def _send_unsubscribe(self, group: str) -> None:
        with self._lock:
            pubsub = self._pubsub if self._connected.is_set() else None
            if group in self._wanted or pubsub is None:
                return  # joined again, or the reconnection subscribes only what is wanted
        with contextlib.suppress(self._redis.RedisError, OSError):
            pubsub.unsubscribe(self._channel(group))  # type: ignore[no-untyped-call]
        with self._lock:
            rejoined = group in self._wanted
        if rejoined:  # a join raced this leave: its subscription must stand
            with contextlib.suppress(self._redis.RedisError, OSError):
                pubsub.subscribe(self._channel(group))

    def _listen(self) -> None:
        backoff = _BACKOFF_FIRST
        lost_at: float | None = None
        while not self._stopped.is_set():
            try:
                pubsub = self._connect()
                if lost_at is not None:
                    logger.warning(
                        "Redis broker reconnected to %s after %.1f s; resubscribed to %d groups",
                        self.url,
                        time.monotonic() - lost_at,
                        len(self._wanted),
                    )
                    lost_at = None
                backoff = _BACKOFF_FIRST
                while not self._stopped.is_set():
                    message = pubsub.get_message(timeout=self._heartbeat)
                    if message is not None:
                        self._handle(message)
            except (self._redis.RedisError, OSError) as exc:
                self._connected.clear()
                self._outage.set()
                if self._stopped.is_set():
                    return
                if lost_at is None:
                    lost_at = time.monotonic()
                    logger.error(
                        "Redis broker lost %s (%s); group messages published meanwhile are "
                        "lost for this process; reconnecting",
                        self.url,
                        exc,
                    )
                # Jitter keeps a fleet of workers from reconnecting in lockstep.
                self._stopped.wait(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, _BACKOFF_MAX)
            except Exception:  # a bug must not silently end group delivery
                if self._stopped.is_set():
                    return  # close() closed the connection under the listener
                logger.exception("Redis broker listener failed; restarting it")
                self._connected.clear()
                self._stopped.wait(backoff)

    def _connect(self) -> redis.client.PubSub:
        old = self._pubsub
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        pubsub: redis.client.PubSub = self._listen_client.pubsub()  # type: ignore[no-untyped-call]
        # PING opens the connection (and fails fast while Redis is down) even when
        # there is nothing to subscribe to yet.
        pubsub.ping()
        with self._lock:
            # From here on subscribe() sends its own SUBSCRIBE; what was wanted
            # before is subscribed below.
            groups = sorted(self._wanted)
            self._pubsub = pubsub
            self._connected.set()
        if groups:
            pubsub.subscribe(*(self._channel(group) for group in groups))
        self._outage.clear()
        for group in groups:  # Redis lost our presence if it restarted
            self._jobs.put((_PRESENCE, group, None))
        return pubsub

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            self._on_message(self._group_of(message["channel"]), message["data"])
        elif kind == "subscribe":
            group = self._group_of(message["channel"])
            with self._lock:
                waiting = self._confirmations.pop(group, [])
            for confirmed in waiting:
                confirmed.set()

    # ---- presence ----------------------------------------------------------------------

    def presence_changed(self, group: str, wait: bool) -> None:
        """Queue a write of this process's count of ``group``; with ``wait``, wait for it."""
        written = threading.Event() if wait else None
        self._jobs.put((_PRESENCE, group, written))
        if written is not None and self._connected.is_set():
            written.wait(self._timeout)

    def _run_jobs(self) -> None:
        # One thread writes every count, so writes never overtake each other; what
        # piled up while it wrote goes out in one round trip. It also beats the
        # heartbeat and sends unsubscriptions, which must not block their callers.
        next_beat = time.monotonic()
        while not self._stopped.is_set():
            try:
                jobs = [self._jobs.get(timeout=max(0.0, next_beat - time.monotonic()))]
            except queue.Empty:
                jobs = []
            with contextlib.suppress(queue.Empty):
                while len(jobs) < 1000:
                    jobs.append(self._jobs.get_nowait())
            if None in jobs:
                return
            groups: set[str] = set()
            for action, group, _ in filter(None, jobs):
                if action == _UNSUBSCRIBE:
                    self._send_unsubscribe(group)
                if action != _FLUSH:
                    groups.add(group)
            if time.monotonic() >= next_beat:
                with self._lock:
                    groups |= self._wanted
                next_beat = time.monotonic() + self._heartbeat
            self._store_presence(sorted(groups))
            for job in filter(None, jobs):
                if job[2] is not None:
                    job[2].set()

    def _store_presence(self, groups: list[str]) -> None:
        keys = [self._alive_key, *(self._presence_key(group) for group in groups)]
        counts = [self._local_count(group) for group in groups]
        try:
            self._write_presence(keys=keys, args=[self.process_id, self._ttl_ms, *counts])
        except (self._redis.RedisError, OSError) as exc:
            # The listener reports the outage; its reconnection rewrites every count.
            logger.debug("Redis broker could not write presence: %s", exc)

    def group_size(self, group: str) -> int:
        """Count ``group``'s live members in every process.

        Raises:
            BrokerUnavailable: when Redis cannot be reached.
        """
        # This process's own joins and leaves count: its queued writes go first.
        flushed = threading.Event()
        self._jobs.put((_FLUSH, group, flushed))
        if self._connected.is_set():
            flushed.wait(self._timeout)
        keys = [self._alive_key, self._presence_key(group)]
        try:
            return int(self._count_presence(keys=keys))
        except (self._redis.RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    # ---- publishing --------------------------------------------------------------------

    def publish(self, group: str, data: bytes) -> None:
        """Publish a packed envelope to ``group`` in every process.

        Raises:
            BrokerUnavailable: when Redis cannot be reached within
                ``WEBSOCKET_BROKER_TIMEOUT``; the message is not sent.
        """
        try:
            self._client.publish(self._channel(group), data)
        except (self._redis.RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(f"the Redis broker at {self.url} is unreachable: {exc}")

    def close(self) -> None:
        """Forget this process's presence, stop both threads and close the connections."""
        with self._lock:
            groups = sorted(self._wanted)
        with contextlib.suppress(Exception):
            keys = [self._alive_key, *(self._presence_key(group) for group in groups)]
            self._forget_process(keys=keys, args=[self.process_id])
        self._stopped.set()
        self._jobs.put(None)
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()  # wakes the listener out of its read
        self._listener.join(self._timeout)
        self._writer.join(self._timeout)
        self._client.close()
        self._listen_client.close()

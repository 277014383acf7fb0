"""Groups: reach every connection of a room, a dashboard or a user, wherever it lives.

A connection joins groups (``request.websocket.join("room")``) and leaves them
(``leave``), and leaves all of them when it closes, however it closes. Anything
in the project (a view, a signal receiver, a management command, a task-queue
worker that serves no WebSockets) sends to a group with :func:`broadcast`::

    from django_websocket import broadcast
    broadcast("room", "hello")            # a text frame to every member
    broadcast("room", b"\\x00\\x01")        # a binary frame

Each process keeps its own members per group and a *broker* links the
processes: the in-memory broker (the default) serves one process; the Redis
broker (``WEBSOCKET_BROKER_URL = "redis://..."``) serves every process and
machine that uses the same Redis. A message published to a group goes to each
process with members once, and that process fans it out. Per group and per
sender, messages arrive in the order they were sent.

Each member has a bounded outbox (``WEBSOCKET_GROUP_QUEUE``): a member that
does not read fast enough is closed with 1013 rather than slow down the others.

A connection whose ``request.user`` is authenticated also belongs to its
user's group: :func:`broadcast_to_user` reaches all of it, and when the user
logs out (Django's ``user_logged_out``, in any process) the connections opened
with that session close with 1008 (``WEBSOCKET_CLOSE_ON_LOGOUT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest

from . import conf
from .brokers import Broker, MemoryBroker, RedisBroker
from .delivery import Envelope, encode_json, pack, unpack

__all__ = [
    "Deliverer",
    "Hub",
    "Membership",
    "abroadcast",
    "abroadcast_json",
    "abroadcast_to_user",
    "agroup_size",
    "aidentify",
    "ajoin",
    "broadcast",
    "broadcast_json",
    "broadcast_to_user",
    "check_group",
    "close_on_logout",
    "get_hub",
    "group_size",
    "identify",
    "is_user_group",
    "new_connection_id",
    "reset_hub",
    "user_group",
]

logger = logging.getLogger("django_websocket")

_GROUP_NAME = re.compile(r"[\w.:/-]{1,150}")
# Users' groups live under a prefix no valid group name can start with.
_USER_GROUP_PREFIX = "@user:"

#: What ``exclude=`` takes: connections (``request.websocket``) or their ids.
Excluded = Any


class Deliverer(Protocol):
    """Where a transport takes a member's group messages."""

    @property
    def delivery_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop to call the methods below on; ``None``: any thread."""

    def deliver(self, message: str | bytes) -> None:
        """Queue ``message`` for the client; never waits."""

    def kick(self, code: int, reason: str) -> None:
        """Close the connection from outside its view; never waits."""

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the connection is over."""


# ---- connection ids -----------------------------------------------------------------

_process_token = uuid.uuid4().hex[:12]
_connection_counter = itertools.count(1)


def new_connection_id() -> str:
    """Return an id no other connection has, in any process."""
    return f"{_process_token}.{next(_connection_counter)}"


def _after_fork() -> None:
    # A forked worker (gunicorn --preload) must not share ids or the parent's broker.
    global _process_token, _connection_counter, _hub
    _process_token = uuid.uuid4().hex[:12]
    _connection_counter = itertools.count(1)
    _hub = None


os.register_at_fork(after_in_child=_after_fork)


class Membership:
    """One connection's place in this process's groups."""

    __slots__ = ("deliverer", "ended", "groups", "id", "session")

    def __init__(self, connection_id: str, deliverer: Deliverer, session: str = "") -> None:
        self.id = connection_id
        self.deliverer = deliverer
        #: The hash of the session the connection was opened with ("" for none).
        self.session = session
        self.groups: set[str] = set()
        #: Set once the connection is over: it joins nothing more.
        self.ended = False


# ---- the hub: this process's members ------------------------------------------------


class Hub:
    """This process's members per group, and the broker that links the processes."""

    def __init__(self, make_broker: Callable[[Hub], Broker]) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, set[Membership]] = {}
        self.broker = make_broker(self)

    def local_count(self, group: str) -> int:
        """How many members ``group`` has in this process."""
        with self._lock:
            return len(self._members.get(group, ()))

    def join(self, member: Membership, group: str) -> None:
        """Add ``member`` to ``group``; return once the group's messages reach it.

        May wait on the broker (the first local member subscribes the process).
        """
        with self._lock:
            if member.ended or group in member.groups:
                return
            members = self._members.setdefault(group, set())
            first = not members
            members.add(member)
            member.groups.add(group)
        if first:
            self.broker.subscribe(group)
        self.broker.presence_changed(group, wait=True)

    def leave(self, member: Membership, group: str) -> None:
        """Remove ``member`` from ``group``; never waits on the broker."""
        with self._lock:
            members = self._members.get(group)
            if members is None or member not in members:
                return
            members.discard(member)
            member.groups.discard(group)
            last = not members
            if last:
                del self._members[group]
        if last:
            self.broker.unsubscribe(group)
        self.broker.presence_changed(group, wait=False)

    def leave_all(self, member: Membership) -> None:
        """Remove ``member`` from every group for good: its connection is over."""
        with self._lock:
            member.ended = True
            groups = list(member.groups)
        for group in groups:
            self.leave(member, group)

    def fan_out(self, group: str, data: bytes) -> None:
        """Hand a packed envelope to this process's members of ``group`` (any thread)."""
        try:
            envelope = unpack(data)
        except ValueError:
            logger.warning("Ignored a message for group %r that is not ours", group)
            return
        with self._lock:
            members = tuple(self._members.get(group, ()))
        if envelope.close_code is not None:
            code, reason = envelope.close_code, str(envelope.message)
            targets = [m for m in members if not envelope.session or m.session == envelope.session]
            _dispatch(targets, lambda target: target.kick(code, reason))
        else:
            message = envelope.message
            targets = [m for m in members if m.id not in envelope.exclude]
            _dispatch(targets, lambda target: target.deliver(message))


def _dispatch(targets: list[Membership], act: Callable[[Deliverer], None]) -> None:
    # Members driven by threads are served at once; members on an event loop are
    # served by that loop, one wake-up per loop however many members it has.
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    by_loop: dict[asyncio.AbstractEventLoop, list[Deliverer]] = {}
    for member in targets:
        loop = member.deliverer.delivery_loop
        if loop is None or loop is running:
            _act_on(member.deliverer, act)
        else:
            by_loop.setdefault(loop, []).append(member.deliverer)
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: its connections are gone
            loop.call_soon_threadsafe(_act_on_all, batch, act)


def _act_on(target: Deliverer, act: Callable[[Deliverer], None]) -> None:
    try:
        act(target)
    except Exception:  # one broken member must not cost the others their message
        logger.exception("Delivering a group message failed")


def _act_on_all(targets: list[Deliverer], act: Callable[[Deliverer], None]) -> None:
    for target in targets:
        _act_on(target, act)


# ---- the process's hub --------------------------------------------------------------

_hub: Hub | None = None
_hub_lock = threading.Lock()


def _make_broker(hub: Hub) -> Broker:
    url = conf.get("WEBSOCKET_BROKER_URL")
    if not url or url.startswith("memory:"):
        return MemoryBroker(hub.fan_out, hub.local_count)
    if url.split(":", 1)[0] not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(
            f"WEBSOCKET_BROKER_URL {url!r}: use redis://, rediss://, unix:// or None"
        )
    return RedisBroker(
        url,
        conf.get("WEBSOCKET_BROKER_PREFIX"),
        on_message=hub.fan_out,
        local_count=hub.local_count,
        presence_timeout=float(conf.get("WEBSOCKET_PRESENCE_TIMEOUT")),
        timeout=float(conf.get("WEBSOCKET_BROKER_TIMEOUT")),
    )


def get_hub() -> Hub:
    """Return this process's hub, built from the settings on first use."""
    global _hub
    hub = _hub
    if hub is None:
        with _hub_lock:
            if _hub is None:
                _hub = Hub(_make_broker)
            hub = _hub
    return hub


def reset_hub() -> None:
    """Close the hub's broker and forget the hub (settings changed, tests)."""
    global _hub
    with _hub_lock:
        hub, _hub = _hub, None
    if hub is not None:
        hub.broker.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("WEBSOCKET_BROKER") or setting == "WEBSOCKET_PRESENCE_TIMEOUT":
        reset_hub()


setting_changed.connect(_on_setting_changed, dispatch_uid="django_websocket.groups")


# ---- sending to groups --------------------------------------------------------------


def check_group(group: str) -> str:
    """Return ``group`` if it is a valid group name.

    Raises:
        ValueError: unless it is 1 to 150 letters, digits or ``_ . : / -``.
    """
    if not isinstance(group, str) or not _GROUP_NAME.fullmatch(group):
        raise ValueError(f"invalid group name {group!r}: use 1 to 150 letters, digits or _ . : / -")
    return group


def _payload(message: object) -> str | bytes:
    if isinstance(message, str | bytes):
        return message
    if isinstance(message, bytearray | memoryview):
        return bytes(message)
    raise TypeError(
        f"a group message is str (text) or bytes (binary), not {type(message).__name__}; "
        "use broadcast_json() for other values"
    )


def _excluded(exclude: Excluded) -> frozenset[str]:
    if exclude is None:
        return frozenset()
    items = [exclude] if isinstance(exclude, str) or hasattr(exclude, "id") else exclude
    return frozenset(item if isinstance(item, str) else item.id for item in items)


def _publish(group: str, envelope: Envelope) -> None:
    get_hub().broker.publish(group, pack(envelope))


async def _apublish(group: str, envelope: Envelope) -> None:
    hub = get_hub()
    if isinstance(hub.broker, MemoryBroker):  # never waits
        hub.broker.publish(group, pack(envelope))
    else:
        await asyncio.to_thread(hub.broker.publish, group, pack(envelope))


def broadcast(group: str, message: str | bytes, *, exclude: Excluded = None) -> None:
    """Send ``message`` to every member of ``group``, in every process.

    Args:
        group: the group's name (letters, digits, ``_ . : / -``; at most 150).
        message: ``str`` goes as a text frame, ``bytes`` as a binary frame.
        exclude: a connection (``request.websocket``), a connection's ``id``, or
            an iterable of them, that must not get the message (the sender).

    Returns once the broker took the message; members get it from their outbox.

    Raises:
        BrokerUnavailable: when the Redis broker cannot be reached.
        ValueError: for an invalid group name.
        TypeError: when ``message`` is neither ``str`` nor ``bytes``.
    """
    _publish(check_group(group), Envelope(_payload(message), _excluded(exclude)))


async def abroadcast(group: str, message: str | bytes, *, exclude: Excluded = None) -> None:
    """:func:`broadcast` for async code: the broker's network I/O runs off the event loop."""
    await _apublish(check_group(group), Envelope(_payload(message), _excluded(exclude)))


def broadcast_json(group: str, value: Any, *, exclude: Excluded = None) -> None:
    """Send ``value`` encoded as JSON, in a text frame, to every member of ``group``."""
    broadcast(group, encode_json(value), exclude=exclude)


async def abroadcast_json(group: str, value: Any, *, exclude: Excluded = None) -> None:
    """:func:`broadcast_json` for async code."""
    await abroadcast(group, encode_json(value), exclude=exclude)


def is_user_group(group: str) -> bool:
    """Whether ``group`` is a user's group (see :func:`user_group`)."""
    return group.startswith(_USER_GROUP_PREFIX)


async def ajoin(member: Membership, group: str) -> None:
    """:meth:`Hub.join` for async code: the broker's I/O runs off the event loop."""
    hub = get_hub()
    if isinstance(hub.broker, MemoryBroker):
        hub.join(member, group)
    else:
        await asyncio.to_thread(hub.join, member, group)


def user_group(user: Any) -> str:
    """The name of the group of ``user``'s connections (a user object or its pk)."""
    return f"{_USER_GROUP_PREFIX}{getattr(user, 'pk', user)}"


def broadcast_to_user(user: Any, message: str | bytes, *, exclude: Excluded = None) -> None:
    """Send ``message`` to every open connection of ``user`` (a user or its pk), anywhere."""
    _publish(user_group(user), Envelope(_payload(message), _excluded(exclude)))


async def abroadcast_to_user(user: Any, message: str | bytes, *, exclude: Excluded = None) -> None:
    """:func:`broadcast_to_user` for async code."""
    await _apublish(user_group(user), Envelope(_payload(message), _excluded(exclude)))


def group_size(group: str) -> int:
    """Count the open connections in ``group`` across every process.

    With Redis, a process that died stops being counted within
    ``WEBSOCKET_PRESENCE_TIMEOUT`` seconds.

    Raises:
        BrokerUnavailable: when the Redis broker cannot be reached.
    """
    return get_hub().broker.group_size(check_group(group))


async def agroup_size(group: str) -> int:
    """:func:`group_size` for async code."""
    hub = get_hub()
    if isinstance(hub.broker, MemoryBroker):
        return hub.broker.group_size(check_group(group))
    return await asyncio.to_thread(hub.broker.group_size, check_group(group))


# ---- users --------------------------------------------------------------------------


def _session_hash(request: HttpRequest | None) -> str:
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    # Only a digest travels through the broker, never the session key itself.
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key else ""


def _user_key(user: Any) -> str | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user_group(user)


def identify(request: HttpRequest) -> tuple[str | None, str]:
    """Return the user group (``None`` when anonymous) and session hash of ``request``."""
    return _user_key(getattr(request, "user", None)), _session_hash(request)


async def aidentify(request: HttpRequest) -> tuple[str | None, str]:
    """:func:`identify` for an async view: the user is loaded off the event loop."""
    if not hasattr(request, "auser"):  # no AuthenticationMiddleware, or another one
        if not hasattr(request, "user") and not hasattr(request, "session"):
            return None, ""  # nobody to identify: no need to leave the event loop
        return await sync_to_async(identify)(request)
    return _user_key(await request.auser()), _session_hash(request)


def close_on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Close, with 1008, the connections opened with the session that logs out.

    Connected to ``user_logged_out``; runs in the process that logs the user out
    and reaches their connections in every process. Without a session (a logout
    outside a request), every connection of the user closes.
    """
    if user is None or not conf.get("WEBSOCKET_CLOSE_ON_LOGOUT"):
        return
    envelope = Envelope("logged out", close_code=1008, session=_session_hash(request))
    try:
        _publish(user_group(user), envelope)
    except Exception:  # a logout must succeed even when the broker is down
        logger.exception("Could not close the WebSocket connections of a user who logged out")

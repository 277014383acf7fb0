"""Group messages on their way to connections: the envelope and the outbox.

Sans-I/O, like the handshake checks: no sockets, threads, event loops or Django.

An :class:`Envelope` is what a broker carries between processes: a message for
a group (text or binary) or an order to close members (logout), with the ids of
the connections to skip. :func:`pack` and :func:`unpack` turn it into bytes and
back; the format is private to this version of the library.

An :class:`Outbox` is one connection's bounded buffer of group messages waiting
to be written. A member that stays over its limit is too slow for its groups:
the transport disconnects it rather than let it hold back the others or grow
without bound.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TOO_SLOW",
    "Envelope",
    "Outbox",
    "encode_json",
    "pack",
    "run_close_callbacks",
    "unpack",
]

logger = logging.getLogger("django_websocket")

#: The close a member too slow for its groups gets: 1013, try again later.
TOO_SLOW = (1013, "too slow for its groups")

_TEXT, _BINARY, _CLOSE = b"T", b"B", b"C"
# kind, close code, length of the exclusion list, length of the session filter.
_HEADER = struct.Struct("!cHHH")


def encode_json(value: Any) -> str:
    """Encode ``value`` as compact JSON text, non-ASCII kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Envelope:
    """One message for a group, as brokers carry it.

    Attributes:
        message: the text or bytes to send; for a close, the close reason.
        exclude: ids of the connections that must not get it.
        close_code: set when this is an order to close the members instead.
        session: with a close, only members opened with this session hash close
            (empty: all of them).
    """

    message: str | bytes
    exclude: frozenset[str] = field(default_factory=frozenset)
    close_code: int | None = None
    session: str = ""


def pack(envelope: Envelope) -> bytes:
    """Encode ``envelope`` for a broker."""
    exclude = ",".join(sorted(envelope.exclude)).encode()
    session = envelope.session.encode()
    if envelope.close_code is not None:
        kind, code, body = _CLOSE, envelope.close_code, str(envelope.message).encode()
    elif isinstance(envelope.message, str):
        kind, code, body = _TEXT, 0, envelope.message.encode()
    else:
        kind, code, body = _BINARY, 0, envelope.message
    header = _HEADER.pack(kind, code, len(exclude), len(session))
    return b"".join((header, exclude, session, body))


def unpack(data: bytes) -> Envelope:
    """Decode what :func:`pack` encoded.

    Raises:
        ValueError: when ``data`` is not an envelope (another program wrote to
            the broker's channel).
    """
    try:
        kind, code, exclude_size, session_size = _HEADER.unpack_from(data)
    except struct.error:
        raise ValueError("not a django-websocket envelope") from None
    start = _HEADER.size
    exclude_end = start + exclude_size
    session_end = exclude_end + session_size
    if session_end > len(data) or kind not in (_TEXT, _BINARY, _CLOSE):
        raise ValueError("not a django-websocket envelope")
    exclude_text = data[start:exclude_end].decode()
    exclude = frozenset(exclude_text.split(",")) if exclude_text else frozenset()
    session = data[exclude_end:session_end].decode()
    body = data[session_end:]
    if kind == _BINARY:
        return Envelope(body, exclude)
    if kind == _TEXT:
        return Envelope(body.decode(), exclude)
    return Envelope(body.decode(), exclude, close_code=code, session=session)


class Outbox:
    """A bounded FIFO of messages waiting to be written to one connection.

    A member may run over ``limit`` for a moment: a burst can reach every
    member before any of them had a chance to write (a thread waits for the GIL
    for 5 ms). A member that *stays* over it for ``grace`` seconds, or for a
    tenth of that with ``hard_limit`` messages piled up, is too slow for its
    groups: :meth:`put` says so and the outbox closes.

    Not thread-safe by itself: each transport guards it the way its connection
    is driven (a lock for threads, the event loop for tasks).
    """

    def __init__(
        self,
        limit: int,
        *,
        grace: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = max(1, limit)
        self.hard_limit = 16 * self.limit
        self.grace = grace
        self._clock = clock
        # Made by the first put and dropped once empty: most connections never
        # have a message waiting, and an empty deque still holds a 64-slot block.
        self._messages: deque[str | bytes] | None = None
        self._over_since: float | None = None
        #: Set once the connection closed or the outbox overflowed: it drops
        #: everything from then on.
        self.closed = False

    def put(self, message: str | bytes) -> bool:
        """Queue ``message``.

        Returns:
            ``False`` when this message overflows the outbox: it then closes,
            and the caller disconnects the member. ``True`` otherwise, also when
            a closed outbox drops the message.
        """
        if self.closed:
            return True
        if self._messages is None:
            self._messages = deque()
        elif len(self._messages) >= self.limit:
            now = self._clock()
            if self._over_since is None:
                self._over_since = now
            elif self._too_slow(now - self._over_since):
                self.close()
                return False
        self._messages.append(message)
        return True

    def _too_slow(self, over_for: float) -> bool:
        if over_for >= self.grace:
            return True
        return len(self) >= self.hard_limit and over_for >= self.grace / 10

    def overflow_report(self, path: str) -> str:
        """The log line that says why the member at ``path`` is closed with 1013."""
        return (
            f"Closing a WebSocket to {path} with 1013: over {self.limit} group messages have "
            f"waited for more than {self.grace:.0f} s for a client that does not read them "
            "(WEBSOCKET_GROUP_QUEUE)"
        )

    def take(self) -> str | bytes | None:
        """Return the oldest waiting message, or ``None`` when empty."""
        messages = self._messages
        if not messages:
            return None
        message = messages.popleft()
        if len(messages) < self.limit:
            self._over_since = None
        if not messages:
            self._messages = None
        return message

    def close(self) -> None:
        """Drop every waiting message and every later one."""
        self.closed = True
        self._messages = None

    def __len__(self) -> int:
        messages = self._messages
        return len(messages) if messages is not None else 0


def run_close_callbacks(callbacks: list[Callable[[], None]]) -> None:
    """Call each of ``callbacks`` (a connection ended); one failing spoils none of the others."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            logger.exception("A WebSocket close callback failed")

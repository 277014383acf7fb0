"""Every ``WEBSOCKET_*`` setting, its default, and the one place that reads them.

Settings are read when a connection first needs them, not at import, so
settings changed at start-up apply; the values are then kept until Django's
``setting_changed`` signal says otherwise, so ``override_settings`` in tests
applies too (a handshake would otherwise pay for a dozen lookups of settings
that a project leaves at their defaults).

=============================  ===========  ============================================
Setting                        Default      Meaning
=============================  ===========  ============================================
``WEBSOCKET_ACCEPT_ALL``       ``False``    with the middleware, every view accepts
                                            WebSockets, decorated or not
``WEBSOCKET_ALLOWED_ORIGINS``  ``()``       origins allowed besides the request's own and
                                            ``CSRF_TRUSTED_ORIGINS``; ``["*"]`` allows all
``WEBSOCKET_REQUIRE_ORIGIN``   ``False``    refuse requests without an Origin header
``WEBSOCKET_MAX_MESSAGE_SIZE`` ``1048576``  largest incoming message (bytes); larger
                                            closes with 1009; ``None`` for no limit
``WEBSOCKET_MAX_QUEUE``        ``16``       incoming messages buffered before the server
                                            stops reading (back-pressure)
``WEBSOCKET_PING_INTERVAL``    ``20``       seconds between keepalive pings (``None``: off)
``WEBSOCKET_PING_TIMEOUT``     ``20``       seconds without a pong before the connection
                                            is declared dead (``None``: wait forever)
``WEBSOCKET_CLOSE_TIMEOUT``    ``10``       seconds to wait for the client's close frame
``WEBSOCKET_COMPRESSION``      ``"deflate"``  permessage-deflate, or ``None`` for none
                                            (WSGI; under ASGI the server decides)
``WEBSOCKET_MAX_CONNECTIONS``  ``10000``    WebSockets one process serves at once; past
                                            it, 503 with Retry-After (``None``: no limit)
``WEBSOCKET_MAX_SYNC_CONNECTIONS`` ``1000``  under ASGI, sync views that may run at once
                                            (each holds a thread); past it, 503
``WEBSOCKET_BROKER_URL``       ``None``     where groups meet: ``None`` for this process
                                            only, ``"redis://host:6379/0"`` for Redis
``WEBSOCKET_BROKER_PREFIX``    ``"djws:"``  prefix of every Redis key and channel we use
``WEBSOCKET_BROKER_TIMEOUT``   ``3``        seconds a Redis call may take before
                                            ``BrokerUnavailable``
``WEBSOCKET_GROUP_QUEUE``      ``256``      group messages waiting for one client before
                                            it is closed as too slow (1013)
``WEBSOCKET_PRESENCE_TIMEOUT`` ``15``       seconds a process that stopped beating is
                                            still counted by ``group_size``
``WEBSOCKET_CLOSE_ON_LOGOUT``  ``True``     close (1008) the connections of a session
                                            when its user logs out
=============================  ===========  ============================================
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed

from .handshake import OriginPolicy
from .protocol import EngineLimits

__all__ = ["DEFAULTS", "SPECS", "SettingSpec", "engine_limits", "get", "origin_policy"]


@dataclass(frozen=True)
class SettingSpec:
    """A setting's name, default, and the types its value may have."""

    name: str
    default: Any
    types: tuple[type, ...]
    allow_none: bool = False
    description: str = ""
    minimum: float = 0

    def is_valid(self, value: object) -> bool:
        """Tell whether ``value`` has an acceptable type for this setting."""
        if value is None:
            return self.allow_none
        if isinstance(value, bool) and bool not in self.types:
            return False
        if not isinstance(value, self.types):
            return False
        if isinstance(value, list | tuple):
            return all(isinstance(item, str) for item in value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value >= self.minimum
        return True


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("WEBSOCKET_ACCEPT_ALL", False, (bool,), description="a bool"),
    SettingSpec("WEBSOCKET_ALLOWED_ORIGINS", (), (list, tuple), description="a list of origins"),
    SettingSpec("WEBSOCKET_REQUIRE_ORIGIN", False, (bool,), description="a bool"),
    SettingSpec(
        "WEBSOCKET_MAX_MESSAGE_SIZE",
        2**20,
        (int,),
        allow_none=True,
        description="a non-negative int or None",
    ),
    SettingSpec("WEBSOCKET_MAX_QUEUE", 16, (int,), description="a positive int", minimum=1),
    SettingSpec(
        "WEBSOCKET_PING_INTERVAL",
        20.0,
        (int, float),
        allow_none=True,
        description="a number of seconds or None",
    ),
    SettingSpec(
        "WEBSOCKET_PING_TIMEOUT",
        20.0,
        (int, float),
        allow_none=True,
        description="a number of seconds or None",
    ),
    SettingSpec("WEBSOCKET_CLOSE_TIMEOUT", 10.0, (int, float), description="a number of seconds"),
    SettingSpec(
        "WEBSOCKET_MAX_CONNECTIONS",
        10_000,
        (int,),
        allow_none=True,
        description="a positive int or None",
        minimum=1,
    ),
    SettingSpec(
        "WEBSOCKET_MAX_SYNC_CONNECTIONS",
        1000,
        (int,),
        description="a positive int",
        minimum=1,
    ),
    SettingSpec(
        "WEBSOCKET_BROKER_URL",
        None,
        (str,),
        allow_none=True,
        description='None or a URL such as "redis://127.0.0.1:6379/0"',
    ),
    SettingSpec("WEBSOCKET_BROKER_PREFIX", "djws:", (str,), description="a str"),
    SettingSpec(
        "WEBSOCKET_BROKER_TIMEOUT",
        3.0,
        (int, float),
        description="a positive number of seconds",
        minimum=0.001,
    ),
    SettingSpec("WEBSOCKET_GROUP_QUEUE", 256, (int,), description="a positive int", minimum=1),
    SettingSpec(
        "WEBSOCKET_PRESENCE_TIMEOUT",
        15.0,
        (int, float),
        description="a positive number of seconds",
        minimum=0.1,
    ),
    SettingSpec("WEBSOCKET_CLOSE_ON_LOGOUT", True, (bool,), description="a bool"),
    SettingSpec(
        "WEBSOCKET_COMPRESSION",
        "deflate",
        (str,),
        allow_none=True,
        description='"deflate" or None',
    ),
)

DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in SPECS}


_T = TypeVar("_T")

# What was read from the settings, and what was built from them. A value read
# while a change was being made must not be kept: each change counts one more
# generation, and a value is stored only if no change came during its reading.
_values: dict[str, Any] = {}
_built: dict[Callable[[], Any], Any] = {}
_generation = 0
_lock = threading.Lock()


def _forget(*, setting: str, **kwargs: Any) -> None:
    global _generation
    if setting.startswith("WEBSOCKET_") or setting == "CSRF_TRUSTED_ORIGINS":
        with _lock:
            _generation += 1
            _values.clear()
            _built.clear()


setting_changed.connect(_forget, dispatch_uid="django_websocket.conf")


def get(name: str) -> Any:
    """Return the value of the ``WEBSOCKET_*`` setting ``name``, or its default."""
    try:
        return _values[name]
    except KeyError:
        generation = _generation
        value = getattr(settings, name, DEFAULTS[name])
        with _lock:
            if generation == _generation:
                _values[name] = value
        return value


def _kept(build: Callable[[], _T]) -> Callable[[], _T]:
    # The object ``build`` makes from the settings, made once per settings change.
    @functools.wraps(build)
    def kept() -> _T:
        try:
            return _built[build]  # type: ignore[no-any-return]
        except KeyError:
            generation = _generation
            made = build()
            with _lock:
                if generation == _generation:
                    _built[build] = made
            return made

    return kept


@_kept
def engine_limits() -> EngineLimits:
    """Build the protocol engine's limits from the current settings."""
    ping_interval = get("WEBSOCKET_PING_INTERVAL")
    ping_timeout = get("WEBSOCKET_PING_TIMEOUT")
    return EngineLimits(
        max_message_size=get("WEBSOCKET_MAX_MESSAGE_SIZE"),
        max_queue=get("WEBSOCKET_MAX_QUEUE"),
        ping_interval=None if ping_interval is None else float(ping_interval),
        ping_timeout=None if ping_timeout is None else float(ping_timeout),
        close_timeout=float(get("WEBSOCKET_CLOSE_TIMEOUT")),
        compression=get("WEBSOCKET_COMPRESSION"),
    )


@_kept
def origin_policy() -> OriginPolicy:
    """Build the Origin policy: our setting plus Django's ``CSRF_TRUSTED_ORIGINS``."""
    trusted = tuple(get("WEBSOCKET_ALLOWED_ORIGINS")) + tuple(settings.CSRF_TRUSTED_ORIGINS)
    return OriginPolicy(trusted=trusted, require_origin=get("WEBSOCKET_REQUIRE_ORIGIN"))

"""System checks for the mistakes users make, with stable ids.

======================  =====================================================
``django_websocket.W001``  ``django_websocket`` listed after ``django.contrib.staticfiles``:
                           staticfiles' ``runserver`` shadows ours.
``django_websocket.E002``  the middleware listed in the old ``MIDDLEWARE_CLASSES``
                           setting, which Django ignores.
``django_websocket.E003``  the app listed in ``MIDDLEWARE`` instead of ``INSTALLED_APPS``.
``django_websocket.W004``  the middleware listed more than once.
``django_websocket.E005``  a ``WEBSOCKET_*`` setting of the wrong type.
``django_websocket.E006``  a ``WEBSOCKET_BROKER_URL`` we cannot use (scheme, or no redis-py).
======================  =====================================================
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import SPECS

__all__ = ["check_installed_apps", "check_middleware", "check_settings"]

APP = "django_websocket"
MIDDLEWARE = "django_websocket.middleware.WebSocketMiddleware"
STATICFILES = "django.contrib.staticfiles"


def _app_index(apps: list[str], name: str) -> int | None:
    for index, entry in enumerate(apps):
        if entry == name or entry.startswith(name + ".apps."):
            return index
    return None


@register(Tags.compatibility)
def check_installed_apps(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when staticfiles' ``runserver`` would shadow the WebSocket-capable one."""
    apps = list(settings.INSTALLED_APPS)
    ours, static = _app_index(apps, APP), _app_index(apps, STATICFILES)
    if ours is not None and static is not None and static < ours:
        return [
            Warning(
                "django_websocket is listed after django.contrib.staticfiles in INSTALLED_APPS, "
                "so `manage.py runserver` is staticfiles' and cannot serve WebSockets.",
                hint="Move 'django_websocket' above 'django.contrib.staticfiles' "
                "(static files are still served).",
                id="django_websocket.W001",
            )
        ]
    return []


@register(Tags.compatibility)
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Find the middleware where Django will not use it, or listed twice."""
    messages: list[CheckMessage] = []
    if MIDDLEWARE in list(getattr(settings, "MIDDLEWARE_CLASSES", None) or ()):
        messages.append(
            Error(
                "WebSocketMiddleware is in MIDDLEWARE_CLASSES, which Django no longer reads.",
                hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE instead.",
                id="django_websocket.E002",
            )
        )
    middleware = list(settings.MIDDLEWARE or ())
    if APP in middleware:
        messages.append(
            Error(
                "'django_websocket' is listed in MIDDLEWARE; it is an app, not a middleware.",
                hint=f"INSTALLED_APPS gets {APP!r}; MIDDLEWARE gets {MIDDLEWARE!r}.",
                id="django_websocket.E003",
            )
        )
    if middleware.count(MIDDLEWARE) > 1:
        messages.append(
            Warning(
                "WebSocketMiddleware is listed more than once in MIDDLEWARE.",
                hint="Keep one entry.",
                id="django_websocket.W004",
            )
        )
    return messages


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check that every ``WEBSOCKET_*`` setting has a value of the right type."""
    messages: list[CheckMessage] = []
    for spec in SPECS:
        if not hasattr(settings, spec.name):
            continue
        value = getattr(settings, spec.name)
        if not spec.is_valid(value):
            messages.append(
                Error(
                    f"{spec.name} must be {spec.description}, not {value!r}.",
                    id="django_websocket.E005",
                )
            )
    compression = getattr(settings, "WEBSOCKET_COMPRESSION", "deflate")
    if isinstance(compression, str) and compression != "deflate":
        messages.append(
            Error(
                f'WEBSOCKET_COMPRESSION must be "deflate" or None, not {compression!r}.',
                id="django_websocket.E005",
            )
        )
    return messages


@register(Tags.compatibility)
def check_broker(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check that ``WEBSOCKET_BROKER_URL`` names a broker this process can reach."""
    url = getattr(settings, "WEBSOCKET_BROKER_URL", None)
    if not isinstance(url, str) or not url or url.startswith("memory:"):
        return []
    scheme = url.split(":", 1)[0]
    if scheme not in ("redis", "rediss", "unix"):
        return [
            Error(
                f"WEBSOCKET_BROKER_URL {url.split('@')[-1]!r} is not a redis://, rediss:// "
                "or unix:// URL.",
                id="django_websocket.E006",
            )
        ]
    if importlib.util.find_spec("redis") is None:
        return [
            Error(
                "WEBSOCKET_BROKER_URL names Redis but redis-py is not installed.",
                hint='pip install "django-websocket[redis]"',
                id="django_websocket.E006",
            )
        ]
    return []

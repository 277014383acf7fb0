"""``manage.py runserver`` that speaks WebSocket.

It is Django's own command (staticfiles' when that app is installed, so static
files are still served) with one change: the server lends client sockets to
WebSocket views. Autoreload, threading and every option stay as they are;
``--multithreaded`` is accepted for compatibility with the original library
(runserver has been threaded by default since Django 1.4).
"""

from __future__ import annotations

import os
from typing import Any

from django.apps import apps
from django.core.management.base import CommandParser
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV

from django_websocket.wsgi import WebSocketWSGIServer

if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.management.commands.runserver import (
        Command as BaseCommand,
    )
else:  # pragma: no cover - depends on the project's INSTALLED_APPS
    from django.core.management.commands.runserver import (  # type: ignore[assignment]
        Command as BaseCommand,
    )


class Command(BaseCommand):
    """Django's development server, able to serve WebSocket views."""

    help = "Starts a lightweight web server for development, with WebSocket support."
    server_cls = WebSocketWSGIServer

    def add_arguments(self, parser: CommandParser) -> None:
        """Add Django's options, and ``--multithreaded`` for compatibility."""
        super().add_arguments(parser)
        parser.add_argument(
            "--multithreaded",
            action="store_true",
            help="Accepted for compatibility; the server is threaded unless --nothreading.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the server; warn that --nothreading serves one connection at a time."""
        # With autoreload the command runs in two processes; warn in the serving one.
        serving = not options.get("use_reloader", True) or os.environ.get(DJANGO_AUTORELOAD_ENV)
        if not options.get("use_threading", True) and serving:
            self.stderr.write(
                "Warning: with --nothreading an open WebSocket blocks every other request."
            )
        super().handle(*args, **options)

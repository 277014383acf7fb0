"""``manage.py runserver`` that speaks WebSocket.

It is Django's own command (staticfiles' when that app is installed, so static
files are still served) with one change: the server lends client sockets to
WebSocket views. Autoreload, threading and every option stay as they are;
``--multithreaded`` is accepted for compatibility with the original library
(runserver has been threaded by default since Django 1.4).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import CommandParser

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
        if not options.get("use_threading", True):
            self.stderr.write(
                "Warning: with --nothreading an open WebSocket blocks every other request."
            )
        super().handle(*args, **options)

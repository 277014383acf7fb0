"""``manage.py runserver`` that speaks WebSocket.

It is Django's own command (staticfiles' when that app is installed, so static
files are still served) with one change: the server lends client sockets to
WebSocket views. Autoreload, threading and every option stay as they are;
``--multithreaded`` is accepted for compatibility with the original library
(runserver has been threaded by default since Django 1.4).

When the server stops (Ctrl-C, SIGTERM) every open WebSocket is closed with
1001 (going away), and with 1012 (service restart) when the autoreloader
restarts it, so that clients see a clean close and can reconnect.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from django.apps import apps
from django.core.management.base import CommandParser
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV

from django_websocket.wsgi import GOING_AWAY, WebSocketWSGIServer, close_all

#: The close of a WebSocket whose server restarts to load new code (RFC 6455 registry).
RESTARTING = (1012, "server restarting")
#: The exit code with which Django's autoreloader asks to be started again.
_RELOAD_EXIT_CODE = 3

if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.management.commands.runserver import (
        Command as BaseCommand,
    )
else:  # pragma: no cover - depends on the project's INSTALLED_APPS
    from django.core.management.commands.runserver import (  # type: ignore[assignment]
        Command as BaseCommand,
    )


def _go_away() -> None:
    # Both at once: the close frames must not wait for the server to stop accepting.
    threading.Thread(target=close_all, name="djws-going-away").start()
    threading.Thread(target=WebSocketWSGIServer.stop_accepting_all, daemon=True).start()


def exit_on_sigterm() -> None:
    """Make SIGTERM end the process the way Ctrl-C does, where nothing handles it yet.

    Its default action kills the process on the spot; Django's autoreloader
    makes it ``sys.exit(0)`` instead, which this does for ``runserver --noreload``.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


def close_at_once_on_ctrl_c() -> None:
    """Start closing the WebSockets as soon as Ctrl-C arrives, then stop as Python does.

    With the autoreloader, the terminal's Ctrl-C also reaches the parent process,
    which kills the serving child a quarter of a second later: the close frames
    cannot wait for the KeyboardInterrupt to unwind.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        _go_away()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, handler)


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

    def run(self, **options: Any) -> None:
        """Serve until stopped, then close the WebSockets still open."""
        exit_on_sigterm()
        close_at_once_on_ctrl_c()
        code, reason = GOING_AWAY
        try:
            super().run(**options)
        except SystemExit as stop:
            if stop.code == _RELOAD_EXIT_CODE:
                code, reason = RESTARTING
            raise
        finally:
            WebSocketWSGIServer.stop_accepting_all()
            close_all(code, reason)

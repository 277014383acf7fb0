"""The demo's views.

``echo_once`` and ``lower_case`` are the two examples of the README, as written
there; ``echo`` is the view behind the page's Echo card, ``chat`` the one behind
the chat room page (``chat_room``).
"""

import inspect
import json

from django.http import HttpResponse
from django.shortcuts import redirect, render

from django_websocket import accept_websocket, broadcast_json, group_size, require_websocket


def index(request):
    """The demo page: one card per WebSocket view, with the view's source code."""
    sources = {name: inspect.getsource(globals()[name]) for name in ("echo", "lower_case", "chat")}
    return render(request, "index.html", {"sources": sources})


@accept_websocket
def echo(request):
    """Send every message back, until the client closes."""
    if not request.is_websocket():
        return redirect("index")  # the page is at /
    for message in request.websocket:
        request.websocket.send(message)


# The chat room: /chat/<room>/ is the page, ws/chat/<room>/ its WebSocket.
#
# The client sends {"type": "hello", "nick": ...} once, then {"type": "say", "text": ...}.
# Everyone in the room, the sender included, gets {"type": "joined" | "left", "nick",
# "count"} and {"type": "message", "nick", "text"}. Anything else is ignored.

MAX_NICK = 32
MAX_TEXT = 2000


def chat_room(request, room):
    """The chat room page."""
    return render(request, "chat.html", {"room": room, "max_nick": MAX_NICK, "max_text": MAX_TEXT})


@require_websocket
def chat(request, room):
    """Join the room on hello, broadcast what the client says, say goodbye when it goes."""
    ws = request.websocket
    group = f"chat.{room}"
    nick = None
    try:
        for message in ws:
            data = parse(message)
            kind = data.get("type")
            if kind == "hello" and nick is None:
                nick = clean_nick(data.get("nick"))
                if nick is None:
                    ws.send_json({"type": "error", "text": "A nickname is 1 to 32 characters."})
                    continue
                ws.join(group)
                broadcast_json(group, {"type": "joined", "nick": nick, "count": group_size(group)})
            elif kind == "say" and nick is not None and (text := clean_text(data.get("text"))):
                broadcast_json(group, {"type": "message", "nick": nick, "text": text})
    finally:
        if nick is not None:
            ws.leave(group)
            broadcast_json(group, {"type": "left", "nick": nick, "count": group_size(group)})


def parse(message):
    """A client message as a dict; ``{}`` for binary frames, malformed JSON or non-objects."""
    try:
        data = json.loads(message) if isinstance(message, str) else None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def clean_nick(value):
    """The nickname, stripped; ``None`` unless it is 1 to MAX_NICK printable characters."""
    nick = value.strip() if isinstance(value, str) else ""
    return nick if 0 < len(nick) <= MAX_NICK and nick.isprintable() else None


def clean_text(value):
    """The message, stripped and cut to MAX_TEXT characters; ``""`` when there is none."""
    return value.strip()[:MAX_TEXT] if isinstance(value, str) else ""


# The README's examples, verbatim.


@require_websocket
def echo_once(request):
    message = request.websocket.wait()
    request.websocket.send(message)


def modify_message(message):
    return message.lower()


@accept_websocket
def lower_case(request):
    if not request.is_websocket():
        message = request.GET["message"]
        message = modify_message(message)
        return HttpResponse(message)
    else:
        for message in request.websocket:
            message = modify_message(message)
            request.websocket.send(message)

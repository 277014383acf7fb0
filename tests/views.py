"""Views the tests talk to, one behaviour each."""

import asyncio
import json
import os
import time
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseForbidden
from django.utils.decorators import method_decorator
from django.views import View

from django_websocket import accept_websocket, require_websocket


def record(name, value):
    """Write what a view observed where the test can read it (server subprocesses)."""
    folder = os.environ.get("DJWS_RESULTS")
    if folder:
        Path(folder, f"{name}.json").write_text(json.dumps(value))


@accept_websocket
def echo(request):
    if not request.is_websocket():
        return HttpResponse("plain echo")
    for message in request.websocket:
        request.websocket.send(message)


@require_websocket(protocols=["chat.v2", "chat.v1"])
def chat(request):
    request.websocket.send(f"protocol={request.websocket.protocol}")
    for message in request.websocket:
        request.websocket.send(message)


@require_websocket
def info(request, room="", number=0):
    request.websocket.send_json(
        {
            "path": request.path,
            "room": room,
            "number": number,
            "query": request.GET.get("q"),
            "secure": request.is_secure(),
            "uri": request.build_absolute_uri(),
            "user": str(request.user) if hasattr(request, "user") else None,
            "protocol": request.websocket.protocol,
            "is_websocket": request.is_websocket(),
        }
    )


@require_websocket
def close_with(request):
    request.websocket.accept()
    request.websocket.close(int(request.GET.get("code", "1000")), request.GET.get("reason", ""))
    record("close_with", {"closed": request.websocket.closed, "code": request.websocket.close_code})


@require_websocket
def fail(request):
    request.websocket.send("about to fail")
    raise ValueError("boom in a WebSocket view")


@require_websocket
def forbidden(request):
    return HttpResponseForbidden("no entry\n")


@require_websocket
@login_required
def private(request):
    request.websocket.send("hello member")


@require_websocket
def refuse_by_close(request):
    request.websocket.close(4003, "not today")


@require_websocket
def timeout(request):
    try:
        request.websocket.wait(timeout=0.2)
    except TimeoutError:
        request.websocket.send("timed out")
    request.websocket.send(f"then {request.websocket.wait()}")


@require_websocket
def drain_after_close(request):
    """The client sends three messages and closes; the view reads after that."""
    request.websocket.accept()
    deadline = time.monotonic() + 5
    while not request.websocket.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    received = [request.websocket.wait(), request.websocket.read(), request.websocket.wait()]
    after = [request.websocket.wait(), request.websocket.read("fallback")]
    iterated = list(request.websocket)
    record(
        "drain_after_close",
        {
            "received": received,
            "after": after,
            "iterated": iterated,
            "count": request.websocket.count_messages(),
            "has": request.websocket.has_messages(),
            "code": request.websocket.close_code,
            "reason": request.websocket.close_reason,
        },
    )


@require_websocket
def counting(request):
    """Count the messages waiting once the client said how many it sent."""
    expected = int(request.websocket.wait())
    deadline = time.monotonic() + 5
    while request.websocket.count_messages() < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    count = request.websocket.count_messages()
    has = request.websocket.has_messages()
    first = request.websocket.read()
    rest = [request.websocket.read() for _ in range(count - 1)]
    request.websocket.send_json(
        {
            "count": count,
            "has": has,
            "first": first,
            "rest": rest,
            "empty_read": request.websocket.read("none"),
            "has_after": request.websocket.has_messages(),
        }
    )


@require_websocket
def types(request):
    request.websocket.send("text")
    request.websocket.send(b"\x00\x01binary")
    request.websocket.send(42)
    request.websocket.send(bytearray(b"ba"))
    request.websocket.send_json({"a": [1, "é"]})
    request.websocket.send(request.websocket.wait_json())
    message = request.websocket.wait()
    request.websocket.send(type(message).__name__)


@require_websocket
def watch_close(request):
    """Wait until the client goes, then record what the view saw."""
    message = request.websocket.wait()
    record(
        "watch_close",
        {
            "message": message,
            "closed": request.websocket.closed,
            "code": request.websocket.close_code,
        },
    )


@require_websocket
def echo_until_closed(request):
    """Echo until the connection closes, then record how it ended (?id= names the record)."""
    for message in request.websocket:
        request.websocket.send(message)
    record(f"until_closed-{request.GET['id']}", {"code": request.websocket.close_code})


@require_websocket
def push_after_close(request):
    request.websocket.wait()
    try:
        request.websocket.send("late")
        outcome = "sent"
    except Exception as exc:
        outcome = type(exc).__name__
    record("push_after_close", {"outcome": outcome})


@require_websocket
def untouched(request):
    """Returns without using the WebSocket: accepted, then closed with 1000."""


def plain(request):
    return HttpResponse("plain view")


def legacy_attribute(request):
    if request.is_websocket():
        request.websocket.send("legacy attribute accepted")
        return None
    return HttpResponse("legacy plain")


legacy_attribute.accept_websocket = True


@method_decorator(accept_websocket, name="dispatch")
class ClassBased(View):
    def get(self, request, name):
        if request.is_websocket():
            request.websocket.send(f"class-based {name}")
            return None
        return HttpResponse(f"class-based plain {name}")


@method_decorator(accept_websocket, name="dispatch")
class AsyncClassBased(View):
    async def get(self, request, name):
        if request.is_websocket():
            await request.websocket.send(f"async class-based {name}")
            return None
        return HttpResponse(f"async class-based plain {name}")


def undecorated_echo(request):
    """No decorator, no attribute: a WebSocket reaches it only with WEBSOCKET_ACCEPT_ALL."""
    if request.is_websocket():
        for message in request.websocket:
            request.websocket.send(message)
        return None
    return HttpResponse(f"undecorated plain, is_websocket={request.is_websocket()}")


def undecorated_fail(request):
    request.websocket.send("about to fail")
    raise ValueError("boom in an undecorated view")


@require_websocket
def flood(request):
    """Send until the connection gives up; record how it ended."""
    chunk = "x" * 65536
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < 60:
            request.websocket.send(chunk)
            sent += 1
        outcome = "still sending after 60 s"
    except Exception as exc:  # the test reads the class name
        outcome = type(exc).__name__
    record("flood", {"outcome": outcome, "closed": request.websocket.closed, "sent": sent})


@require_websocket
def db_count(request):
    """Use the database from a sync view, then answer."""
    from django.contrib.auth.models import User

    request.websocket.send(f"users={User.objects.count()}")
    request.websocket.wait()


@require_websocket
async def async_hold(request):
    """An async view that stays open until the client closes."""
    await request.websocket.send("held")
    await request.websocket.wait()


@require_websocket
async def async_concurrent(request):
    """Two tasks wait at once, then two tasks send at once."""
    websocket = request.websocket
    first, second = await asyncio.gather(websocket.wait(), websocket.wait())
    await asyncio.gather(websocket.send("block"), websocket.send(f"{first}+{second}"))
    await websocket.wait()


@require_websocket
async def async_cancelled_wait(request):
    """A wait cancelled by a timeout does not lose the message it was waiting for."""
    websocket = request.websocket
    await websocket.accept()
    try:
        await asyncio.wait_for(websocket.wait(), 0.3)
    except TimeoutError:
        await websocket.send("timed out")
    await websocket.send(f"then {await websocket.wait()}")


def room_reply(ws, request, name, message):
    """What the room views do with one command; returns the reply, if any."""
    from django_websocket import (
        BrokerUnavailable,
        broadcast,
        broadcast_json,
        broadcast_to_user,
        group_size,
    )

    command, _, argument = message.partition(":")
    try:
        if command == "say":  # to everyone else in the room
            broadcast(name, argument, exclude=ws)
        elif command == "all":
            broadcast(name, argument)
        elif command == "bytes":
            broadcast(name, argument.encode(), exclude=[ws.id])
        elif command == "json":
            broadcast_json(name, {"text": argument}, exclude=ws)
        elif command == "user":
            broadcast_to_user(request.user, argument)
        elif command == "count":
            for number in range(int(argument)):
                broadcast(name, str(number))
        elif command == "flood":
            count, size = map(int, argument.split(","))
            for _ in range(count):
                broadcast(name, "x" * size, exclude=ws)
            return "flooded"
        elif command == "join":
            ws.join(argument)
            return "joined"
        elif command == "leave":
            ws.leave(argument or name)
            return "left"
        elif command == "groups":
            return json.dumps(sorted(ws.groups))
        elif command == "size":
            return str(group_size(argument or name))
        elif command == "whoami":
            return f"{ws.id} {request.user}"
    except BrokerUnavailable as exc:
        return f"unavailable: {exc}"
    return None


@require_websocket
def room(request, name):
    """A chat room: joins ``name`` on open, then runs the commands of room_reply."""
    ws = request.websocket
    ws.join(name)
    ws.send(f"in {name}")
    for message in ws:
        reply = room_reply(ws, request, name, message)
        if reply is not None:
            ws.send(reply)


def login_as(request, username):
    """Plain HTTP: log in as ``username`` (created on first use)."""
    from django.contrib.auth import login
    from django.contrib.auth.models import User

    user, _ = User.objects.get_or_create(username=username)
    login(request, user)
    return HttpResponse(f"logged in as {username}")


def logout_view(request):
    """Plain HTTP: log out."""
    from django.contrib.auth import logout

    logout(request)
    return HttpResponse("logged out")


@require_websocket
def db_users(request):
    """On each message: who asks, and the usernames in the database (test client tests)."""
    from django.contrib.auth.models import User

    for message in request.websocket:
        if message == "add":
            User.objects.create(username="added-by-view")
        names = sorted(User.objects.values_list("username", flat=True))
        request.websocket.send_json({"user": request.user.username, "names": names})


@require_websocket
def fail_after_hello(request):
    """Accept, greet, and fail on the first message."""
    request.websocket.send("hello")
    request.websocket.wait()
    raise ValueError("the view broke")


@require_websocket
def fail_before_accept(request):
    """Raise before the handshake: Django's 500, as for any view."""
    raise ValueError("before the handshake")


def memory(request):
    """Plain HTTP, for test_leaks and soak: collect garbage, count the objects the
    collector tracks, then give the heap's free pages back to the system (glibc's
    malloc_trim), so that the RSS read from /proc next is the memory the server holds,
    not what its allocator keeps for later."""
    import ctypes
    import gc

    gc.collect()
    objects = len(gc.get_objects())
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS stays as it is
        trimmed = False
    else:
        trimmed = True
    return HttpResponse(json.dumps({"objects": objects, "trimmed": trimmed}))


#: What ``leaky`` keeps forever (test_leaks shows that each kind of leak is caught).
LEAKED = []


@require_websocket
def leaky(request):
    """Echo one message, then leak what ``?leak=`` names: a thread, an fd, 200 kB."""
    import threading

    request.websocket.send(request.websocket.wait())
    leak = request.GET.get("leak", "")
    if "thread" in leak:
        threading.Thread(target=threading.Event().wait, daemon=True).start()
    if "fd" in leak:
        LEAKED.append(open(os.devnull))  # noqa: SIM115
    if "memory" in leak:
        LEAKED.append({"kept": os.urandom(200_000)})

"""The async twins of the views in views.py: the same behaviour through AsyncWebSocket.

They are served under /async/ so that one test suite runs both kinds of view
on every server.
"""

import asyncio
import json
import time

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseForbidden
from django.urls import path

from django_websocket import accept_websocket, require_websocket

from .views import record


@accept_websocket
async def echo(request):
    if not request.is_websocket():
        return HttpResponse("plain echo")
    async for message in request.websocket:
        await request.websocket.send(message)


@require_websocket(protocols=["chat.v2", "chat.v1"])
async def chat(request):
    await request.websocket.send(f"protocol={request.websocket.protocol}")
    async for message in request.websocket:
        await request.websocket.send(message)


@require_websocket
async def info(request, room="", number=0):
    user = await request.auser() if hasattr(request, "auser") else None
    await request.websocket.send_json(
        {
            "path": request.path,
            "room": room,
            "number": number,
            "query": request.GET.get("q"),
            "secure": request.is_secure(),
            "uri": request.build_absolute_uri(),
            "user": str(user) if user is not None else None,
            "protocol": request.websocket.protocol,
            "is_websocket": request.is_websocket(),
        }
    )


@require_websocket
async def close_with(request):
    await request.websocket.accept()
    await request.websocket.close(
        int(request.GET.get("code", "1000")), request.GET.get("reason", "")
    )
    record("close_with", {"closed": request.websocket.closed, "code": request.websocket.close_code})


@require_websocket
async def fail(request):
    await request.websocket.send("about to fail")
    raise ValueError("boom in a WebSocket view")


@require_websocket
async def forbidden(request):
    return HttpResponseForbidden("no entry\n")


@require_websocket
@login_required
async def private(request):
    await request.websocket.send("hello member")


@require_websocket
async def refuse_by_close(request):
    await request.websocket.close(4003, "not today")


@require_websocket
async def timeout(request):
    try:
        await request.websocket.wait(timeout=0.2)
    except TimeoutError:
        await request.websocket.send("timed out")
    await request.websocket.send(f"then {await request.websocket.wait()}")


@require_websocket
async def drain_after_close(request):
    """The client sends three messages and closes; the view reads after that."""
    websocket = request.websocket
    await websocket.accept()
    deadline = time.monotonic() + 5
    while not websocket.closed and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    received = [await websocket.wait(), websocket.read(), await websocket.wait()]
    after = [await websocket.wait(), websocket.read("fallback")]
    iterated = [message async for message in websocket]
    record(
        "drain_after_close",
        {
            "received": received,
            "after": after,
            "iterated": iterated,
            "count": websocket.count_messages(),
            "has": websocket.has_messages(),
            "code": websocket.close_code,
            "reason": websocket.close_reason,
        },
    )


@require_websocket
async def counting(request):
    """Count the messages waiting once the client said how many it sent."""
    websocket = request.websocket
    expected = int(await websocket.wait())
    deadline = time.monotonic() + 5
    while websocket.count_messages() < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    count = websocket.count_messages()
    has = websocket.has_messages()
    first = websocket.read()
    rest = [websocket.read() for _ in range(count - 1)]
    await websocket.send_json(
        {
            "count": count,
            "has": has,
            "first": first,
            "rest": rest,
            "empty_read": websocket.read("none"),
            "has_after": websocket.has_messages(),
        }
    )


@require_websocket
async def types(request):
    websocket = request.websocket
    await websocket.send("text")
    await websocket.send(b"\x00\x01binary")
    await websocket.send(42)
    await websocket.send(bytearray(b"ba"))
    await websocket.send_json({"a": [1, "é"]})
    await websocket.send(await websocket.wait_json())
    message = await websocket.wait()
    await websocket.send(type(message).__name__)


@require_websocket
async def watch_close(request):
    """Wait until the client goes, then record what the view saw."""
    message = await request.websocket.wait()
    record(
        "watch_close",
        {
            "message": message,
            "closed": request.websocket.closed,
            "code": request.websocket.close_code,
        },
    )


@require_websocket
async def echo_until_closed(request):
    """Echo until the connection closes, then record how it ended (?id= names the record)."""
    async for message in request.websocket:
        await request.websocket.send(message)
    record(f"until_closed-{request.GET['id']}", {"code": request.websocket.close_code})


@require_websocket
async def push_after_close(request):
    await request.websocket.wait()
    try:
        await request.websocket.send("late")
        outcome = "sent"
    except Exception as exc:
        outcome = type(exc).__name__
    record("push_after_close", {"outcome": outcome})


@require_websocket
async def untouched(request):
    """Returns without using the WebSocket: accepted, then closed with 1000."""


@require_websocket
async def flood(request):
    """Send until the connection gives up; record how it ended."""
    chunk = "x" * 65536
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < 60:
            await request.websocket.send(chunk)
            sent += 1
        outcome = "still sending after 60 s"
    except Exception as exc:  # the test reads the class name
        outcome = type(exc).__name__
    record("flood", {"outcome": outcome, "closed": request.websocket.closed, "sent": sent})


urlpatterns = [
    path("echo/", echo),
    path("chat/", chat),
    path("info/", info),
    path("info/<str:room>/<int:number>/", info),
    path("close_with/", close_with),
    path("fail/", fail),
    path("forbidden/", forbidden),
    path("private/", private),
    path("refuse_by_close/", refuse_by_close),
    path("timeout/", timeout),
    path("drain_after_close/", drain_after_close),
    path("counting/", counting),
    path("types/", types),
    path("watch_close/", watch_close),
    path("echo_until_closed/", echo_until_closed),
    path("push_after_close/", push_after_close),
    path("untouched/", untouched),
    path("flood/", flood),
]


async def room_reply(ws, request, name, message):
    """The async twin of views.room_reply."""
    from django_websocket import (
        BrokerUnavailable,
        abroadcast,
        abroadcast_json,
        abroadcast_to_user,
        agroup_size,
    )

    command, _, argument = message.partition(":")
    try:
        if command == "say":
            await abroadcast(name, argument, exclude=ws)
        elif command == "all":
            await abroadcast(name, argument)
        elif command == "bytes":
            await abroadcast(name, argument.encode(), exclude=[ws.id])
        elif command == "json":
            await abroadcast_json(name, {"text": argument}, exclude=ws)
        elif command == "user":
            await abroadcast_to_user(await request.auser(), argument)
        elif command == "count":
            for number in range(int(argument)):
                await abroadcast(name, str(number))
        elif command == "flood":
            count, size = map(int, argument.split(","))
            for _ in range(count):
                await abroadcast(name, "x" * size, exclude=ws)
            return "flooded"
        elif command == "join":
            await ws.join(argument)
            return "joined"
        elif command == "leave":
            await ws.leave(argument or name)
            return "left"
        elif command == "groups":
            return json.dumps(sorted(ws.groups))
        elif command == "size":
            return str(await agroup_size(argument or name))
        elif command == "whoami":
            return f"{ws.id} {await request.auser()}"
    except BrokerUnavailable as exc:
        return f"unavailable: {exc}"
    return None


@require_websocket
async def room(request, name):
    """The async twin of views.room."""
    ws = request.websocket
    await ws.join(name)
    await ws.send(f"in {name}")
    async for message in ws:
        reply = await room_reply(ws, request, name, message)
        if reply is not None:
            await ws.send(reply)


urlpatterns.append(path("room/<str:name>/", room))


@require_websocket
async def db_users(request):
    """The async twin of views.db_users."""
    from django.contrib.auth.models import User

    user = await request.auser()
    async for message in request.websocket:
        if message == "add":
            await User.objects.acreate(username="added-by-view")
        names = sorted([name async for name in User.objects.values_list("username", flat=True)])
        await request.websocket.send_json({"user": user.username, "names": names})


@require_websocket
async def fail_after_hello(request):
    """The async twin of views.fail_after_hello."""
    await request.websocket.send("hello")
    await request.websocket.wait()
    raise ValueError("the view broke")


urlpatterns += [path("db_users/", db_users), path("fail_after_hello/", fail_after_hello)]

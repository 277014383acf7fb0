"""The demo's views.

``echo_once`` and ``lower_case`` are the two examples of the README, as written
there; ``echo`` is the view behind the page's Echo card.
"""

import inspect

from django.http import HttpResponse
from django.shortcuts import redirect, render

from django_websocket import accept_websocket, require_websocket


def index(request):
    """The demo page: one card per WebSocket view, with the view's source code."""
    sources = {name: inspect.getsource(globals()[name]) for name in ("echo", "lower_case")}
    return render(request, "index.html", {"sources": sources})


@accept_websocket
def echo(request):
    """Send every message back, until the client closes."""
    if not request.is_websocket():
        return redirect("index")  # the page is at /
    for message in request.websocket:
        request.websocket.send(message)


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

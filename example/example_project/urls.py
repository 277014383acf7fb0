"""URLs of the demo: the pages, and the WebSocket views they talk to."""

from django.urls import path, re_path

from . import views

# A room name is also part of a group name (chat.<room>): keep it short and plain.
ROOM = r"(?P<room>[A-Za-z0-9_-]{1,64})"

urlpatterns = [
    path("", views.index, name="index"),
    path("ws/echo/", views.echo, name="echo"),
    path("ws/echo_once/", views.echo_once, name="echo_once"),
    path("lower_case/", views.lower_case, name="lower_case"),
    path("ws/lower/", views.lower_case),
    re_path(rf"^chat/{ROOM}/$", views.chat_room, name="chat_room"),
    re_path(rf"^ws/chat/{ROOM}/$", views.chat, name="chat"),
]

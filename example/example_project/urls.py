"""URLs of the demo: the page, and the WebSocket views it talks to."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("ws/echo/", views.echo, name="echo"),
    path("ws/echo_once/", views.echo_once, name="echo_once"),
    path("lower_case/", views.lower_case, name="lower_case"),
    path("ws/lower/", views.lower_case),
]

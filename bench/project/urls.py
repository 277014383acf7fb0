from django.urls import path

from . import views

urlpatterns = [
    path("async", views.echo_async),
    path("sync", views.echo_sync),
]

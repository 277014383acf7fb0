from django.urls import path

from . import views

urlpatterns = [
    path("async", views.echo_async),
    path("sync", views.echo_sync),
    path("async-user", views.echo_async_user),
    path("sync-user", views.echo_sync_user),
]

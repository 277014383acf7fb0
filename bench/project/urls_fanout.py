from django.urls import path

from . import fanout_views

urlpatterns = [
    path("async", fanout_views.fanout_async),
    path("sync", fanout_views.fanout_sync),
]

from django.urls import include, path

from . import async_views, views
from .readme_examples import readme

urlpatterns = [
    path("echo/", views.echo),
    path("echo_once/", readme.echo_once),
    path("lower_case/", readme.lower_case),
    path("chat/", views.chat),
    path("info/", views.info),
    path("info/<str:room>/<int:number>/", views.info),
    path("close_with/", views.close_with),
    path("fail/", views.fail),
    path("forbidden/", views.forbidden),
    path("private/", views.private),
    path("refuse_by_close/", views.refuse_by_close),
    path("timeout/", views.timeout),
    path("drain_after_close/", views.drain_after_close),
    path("counting/", views.counting),
    path("types/", views.types),
    path("watch_close/", views.watch_close),
    path("push_after_close/", views.push_after_close),
    path("untouched/", views.untouched),
    path("flood/", views.flood),
    path("plain/", views.plain),
    path("legacy/", views.legacy_attribute),
    path("cbv/<str:name>/", views.ClassBased.as_view()),
    path("acbv/<str:name>/", views.AsyncClassBased.as_view()),
    path("undecorated/", views.undecorated_echo),
    path("undecorated_fail/", views.undecorated_fail),
    path("db_count/", views.db_count),
    path("async_hold/", views.async_hold),
    path("async_concurrent/", views.async_concurrent),
    path("async_cancelled_wait/", views.async_cancelled_wait),
    path("async/", include(async_views.urlpatterns)),
]

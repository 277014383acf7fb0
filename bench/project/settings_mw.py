"""Bench settings plus Django's usual session and authentication middleware."""

from .settings import *  # noqa: F403

INSTALLED_APPS = [
    "django_websocket",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
# Never touched by the echo (request.session and request.user stay lazy).
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

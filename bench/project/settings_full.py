"""Bench settings with Django's default MIDDLEWARE list (as ``startproject`` writes it).

For the handshake comparison: our views behind the full middleware chain
versus a Channels consumer under AuthMiddlewareStack, with the same session and
auth apps. No request carries a session cookie, so no query reaches the
(empty, in-memory) database; each view still resolves the user once.
"""

from .settings import *  # noqa: F403

INSTALLED_APPS = [
    "django_websocket",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

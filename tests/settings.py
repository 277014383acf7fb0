"""Settings of the project the tests serve (in process and in server subprocesses)."""

import os
import tempfile

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = [
    "django_websocket",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
# Server subprocesses run with and without our middleware.
if os.environ.get("DJWS_MIDDLEWARE") == "1":
    MIDDLEWARE.append("django_websocket.middleware.WebSocketMiddleware")
if os.environ.get("DJWS_SYNC_MIDDLEWARE") == "1":  # test_asgi: a middleware without async
    MIDDLEWARE.append("tests.middleware.SyncOnly")
ROOT_URLCONF = "tests.urls"
# The test database is a file: an in-memory SQLite connection ignores close(), and
# test_asgi checks that the connections of sync views are closed.
# Server subprocesses that share users and sessions get a migrated file (DJWS_DB).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJWS_DB", ":memory:"),
        "TEST": {"NAME": os.path.join(tempfile.gettempdir(), f"djws-test-{os.getpid()}.sqlite3")},
    }
}
USE_TZ = True
STATIC_URL = "/static/"
LOGIN_URL = "/login/"
WEBSOCKET_PING_INTERVAL = float(os.environ.get("DJWS_PING_INTERVAL", "20"))
WEBSOCKET_PING_TIMEOUT = float(os.environ.get("DJWS_PING_TIMEOUT", "20"))
WEBSOCKET_CLOSE_TIMEOUT = 2
WEBSOCKET_MAX_SYNC_CONNECTIONS = int(os.environ.get("DJWS_MAX_SYNC", "1000"))
WEBSOCKET_MAX_CONNECTIONS = int(os.environ.get("DJWS_MAX_CONNECTIONS", "10000"))
# conformance/run.py raises it for Autobahn's 9.* cases (messages up to 16 MiB).
WEBSOCKET_MAX_MESSAGE_SIZE = int(os.environ.get("DJWS_MAX_MESSAGE_SIZE", str(2**20)))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_websocket": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
WEBSOCKET_ACCEPT_ALL = os.environ.get("DJWS_ACCEPT_ALL") == "1"
STATICFILES_DIRS = [os.path.join(os.path.dirname(__file__), "static")]
WEBSOCKET_BROKER_URL = os.environ.get("DJWS_BROKER_URL") or None
WEBSOCKET_BROKER_PREFIX = os.environ.get("DJWS_BROKER_PREFIX", "djws-test:")
WEBSOCKET_PRESENCE_TIMEOUT = float(os.environ.get("DJWS_PRESENCE_TIMEOUT", "15"))
WEBSOCKET_GROUP_QUEUE = int(os.environ.get("DJWS_GROUP_QUEUE", "256"))
# Behind a proxy that sets X-Forwarded-Proto/Host (test_security): trusted only when told.
if os.environ.get("DJWS_BEHIND_PROXY") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
    ALLOWED_HOSTS.append("public.example")

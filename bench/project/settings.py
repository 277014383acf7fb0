"""Bench settings: DEBUG off, no middleware, nothing but what the echo needs."""

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "project.urls"
INSTALLED_APPS = ["django_websocket"]
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
# No Origin header from the load generator: passes, since WEBSOCKET_REQUIRE_ORIGIN is False.
LOGGING_CONFIG = None
# The idle scenario holds 5,000 sync views under ASGI (each in a thread); the default is 1,000.
WEBSOCKET_MAX_SYNC_CONNECTIONS = 6000

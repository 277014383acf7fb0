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

"""Minimal Django settings for building the documentation (autodoc imports the package)."""

SECRET_KEY = "docs-only-not-secret"
INSTALLED_APPS = [
    "django_websocket",
    "django.contrib.auth",
    "django.contrib.contenttypes",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True

"""Settings of the demo project. For local development only: never deploy them.

No view uses the database, so the demo runs without ``migrate``.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-websocket-demo-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    # Above staticfiles: its `runserver` is the one that speaks WebSocket.
    "django_websocket",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    },
}

USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_websocket": {"handlers": ["console"], "level": "INFO"}},
}

# Groups, for the chat room. Without a broker URL, the in-memory broker links the
# connections of one process, which is all `make demo` needs. To chat across two
# servers, start both with the same Redis (tabs on :8000 and :8001 then share rooms):
#   export WEBSOCKET_BROKER_URL=redis://127.0.0.1:6379/0
#   make demo                                                  # :8000
#   .venv/bin/python example/manage.py runserver 127.0.0.1:8001  # in a second shell
WEBSOCKET_BROKER_URL = os.environ.get("WEBSOCKET_BROKER_URL") or None
WEBSOCKET_BROKER_PREFIX = os.environ.get("WEBSOCKET_BROKER_PREFIX", "djws-demo:")

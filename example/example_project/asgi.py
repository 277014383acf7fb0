"""ASGI entry point of the demo: ``uvicorn --app-dir example example_project.asgi:application``.

The same views as under runserver; WebSockets go through django_websocket's
ASGI application, plain HTTP through Django's own handler.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from django_websocket.asgi import get_asgi_application

application = get_asgi_application()
if settings.DEBUG:
    # runserver serves the page's script and style in DEBUG; under uvicorn this does.
    application = ASGIStaticFilesHandler(application)

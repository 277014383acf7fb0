"""ASGI application of the test project, for uvicorn, daphne and hypercorn."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django_websocket.asgi import get_asgi_application

application = get_asgi_application()

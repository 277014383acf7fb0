"""EXPERIMENT: our application with bench/project/patched.py applied (see there)."""

import os

from . import patched  # noqa: F401
from . import profiling  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django_websocket.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()

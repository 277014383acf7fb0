"""Our application on WSGI servers (gunicorn, runserver): Django's own WSGI handler.

django_websocket needs nothing here: its views take the connection over from
the server (see docs/deployment.md).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()

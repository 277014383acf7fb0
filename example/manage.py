#!/usr/bin/env python
"""Run the django-websocket demo: ``python example/manage.py runserver``."""

import os
import sys
from pathlib import Path


def main() -> None:
    """Put this folder on ``sys.path`` (for ``example_project``) and run the command."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

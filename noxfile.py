"""Test matrix: Python 3.11 with Django 5.2 LTS, Python 3.13 with Django 6.1."""

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
# A missing interpreter is a failure, never a silent skip.
nox.options.error_on_missing_interpreters = True

MATRIX = [("3.11", "5.2"), ("3.13", "6.1")]


@nox.session
@nox.parametrize(("python", "django"), MATRIX)
def tests(session: nox.Session, django: str) -> None:
    """Run the suite on one Python and Django pair."""
    major, minor = django.split(".")
    session.install("-e", ".[test]", f"Django>={django},<{major}.{int(minor) + 1}")
    session.run("python", "-c", "import django; print('Django', django.get_version())")
    # The leak tests open 2,000 connections per server on the default environment
    # (make test); the second Python/Django pair checks the same with 500, to keep CI short.
    env = {} if (session.python, django) == MATRIX[0] else {"DJWS_LEAK_CONNECTIONS": "500"}
    workers = os.environ.get("PYTEST_WORKERS", "2")
    session.run("python", "-m", "pytest", "-n", workers, *session.posargs, env=env)

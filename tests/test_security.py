"""Cross-site WebSocket hijacking, on every server, with the default settings.

A page on another origin can make the victim's browser open a WebSocket to us,
and the browser attaches the victim's cookies. The Origin header is what tells
such a handshake apart: only the site's own origin (and origins the settings
trust) may open a connection that carries a session; ``null`` and a missing
Origin with cookies are refused too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from .clients import connect_to, raw_request, upgrade_headers
from .conftest import ALL_SERVERS, ROOT, start_server, timeout


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A migrated SQLite file, so that a login on the server gives a real session."""
    path = str(tmp_path_factory.mktemp("security") / "db.sqlite3")
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity=0"],
        cwd=ROOT,
        env={**_env(), "DJWS_DB": path},
        check=True,
        timeout=timeout(60),
    )
    return path


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module", params=ALL_SERVERS)
def logged_in(request, database):
    """A server of every kind, and the session cookie of a user logged in on it."""
    server = start_server(request.param, extra_env={"DJWS_DB": database})
    try:
        url = f"http://127.0.0.1:{server.port}/login/ada/"
        with urllib.request.urlopen(url, timeout=timeout(10)) as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
        assert cookie.startswith("sessionid=")
        yield server, cookie
    finally:
        server.stop()


def test_the_sites_own_pages_get_the_session(logged_in):
    server, cookie = logged_in
    client = connect_to(server, "/info/", legacy=True, additional_headers={"Cookie": cookie})
    assert json.loads(client.recv(timeout(5)))["user"] == "ada"
    client.close()


def test_a_client_without_origin_or_cookies_is_served_anonymously(logged_in):
    server, _ = logged_in
    client = connect_to(server, "/info/", legacy=True, origin=None)
    assert json.loads(client.recv(timeout(5)))["user"] == "AnonymousUser"
    client.close()


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        None,  # no Origin header, but the victim's cookies
        "https://127.0.0.1:{port}",  # same host and port, another scheme
        "http://127.0.0.1:{other_port}",  # same host, another port
        "http://127.0.0.1.evil.example:{port}",
        "http://localhost:{port}",  # an allowed host, but not the one the page was on
    ],
)
def test_another_origin_cannot_open_a_websocket_with_the_victims_session(logged_in, origin):
    server, cookie = logged_in
    headers = upgrade_headers(server.port, Cookie=cookie)
    if origin is not None:
        headers["Origin"] = origin.format(port=server.port, other_port=server.port + 1)
    answer = raw_request(server.port, "/info/", headers)
    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert b'"user"' not in answer
    assert "Refused WebSocket to /info/" in server.wait_for_log("Refused WebSocket to /info/")
    if origin is None and server.traits.denial:
        assert b"a WebSocket handshake with cookies must send an Origin header" in answer


PROXY_HEADERS = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example"}
# uvicorn and gunicorn apply X-Forwarded-Proto themselves for clients at
# --forwarded-allow-ips (127.0.0.1 by default): that is the server's trust, set on
# its command line (docs/security.md). Turned off, what is left is Django's settings.
SERVER_ARGS = {
    "uvicorn": ("--no-proxy-headers",),
    "uvicorn-wsproto": ("--no-proxy-headers",),
    "gunicorn-gthread": ("--forwarded-allow-ips", ""),
    "gunicorn-gevent": ("--forwarded-allow-ips", ""),
}


@pytest.mark.parametrize("behind_proxy", [False, True])
@pytest.mark.parametrize("kind", [kind for kind in ALL_SERVERS if kind != "gunicorn-sync"])
def test_forwarded_headers_count_only_when_the_settings_trust_them(kind, behind_proxy):
    """X-Forwarded-Proto/Host change the request's own origin (and what the view sees)
    only with SECURE_PROXY_SSL_HEADER / USE_X_FORWARDED_HOST."""
    server = start_server(
        kind,
        extra_env={"DJWS_BEHIND_PROXY": "1" if behind_proxy else "0"},
        extra_args=SERVER_ARGS.get(kind, ()),
    )
    try:
        public, internal = "https://public.example", server.origin
        allowed, refused = (public, internal) if behind_proxy else (internal, public)
        client = connect_to(
            server, "/info/", legacy=True, origin=allowed, additional_headers=PROXY_HEADERS
        )
        seen = json.loads(client.recv(timeout(5)))
        client.close()
        if behind_proxy:
            assert (seen["secure"], seen["uri"]) == (True, "https://public.example/info/")
        else:
            assert (seen["secure"], seen["uri"]) == (False, f"{internal}/info/")
        headers = {**upgrade_headers(server.port), **PROXY_HEADERS, "Origin": refused}
        answer = raw_request(server.port, "/info/", headers)
        assert answer.startswith(b"HTTP/1.1 403"), answer
    finally:
        server.stop()

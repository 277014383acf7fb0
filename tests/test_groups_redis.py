"""Groups across processes through Redis, on real servers.

A cluster of server processes shares the test Redis (``REDIS_URL``, keys under a
prefix of this run's own) and one migrated SQLite file for users and sessions:
two uvicorn processes (one with sync views, one with async views in use), a
gunicorn gthread server with two workers and a gunicorn gevent worker. Clients
connect to each; messages come from views, and from a separate Python process
that serves no WebSockets at all.
"""

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, replace

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Opcode

from .clients import RawWebSocket, connect_to
from .conftest import ROOT, Server, start_server, timeout
from .redis_support import REDIS_URL, PrivateRedis, delete_prefix, require_redis, unique_prefix

pytestmark = pytest.mark.server


@dataclass
class Cluster:
    servers: dict[str, Server]
    env: dict[str, str]

    def __getitem__(self, name: str) -> Server:
        return self.servers[name]

    def outside(self, code: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``code`` in a new Python process of the project that serves no WebSockets."""
        return outside(self.env, code, check)


def outside(env: dict[str, str], code: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` after django.setup() in a process of its own, with ``env``."""
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    script = "import django\ndjango.setup()\n" + code
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout(30),
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def cluster_env(broker_url: str, prefix: str, database: str) -> dict[str, str]:
    return {
        "DJWS_BROKER_URL": broker_url,
        "DJWS_BROKER_PREFIX": prefix,
        "DJWS_DB": database,
        "DJWS_PRESENCE_TIMEOUT": "2",
        "DJWS_GROUP_QUEUE": "4",
    }


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A migrated SQLite file the servers share (users and sessions)."""
    path = str(tmp_path_factory.mktemp("cluster") / "shared.sqlite3")
    outside({"DJWS_DB": path}, "from django.core.management import call_command\n"
            "call_command('migrate', verbosity=0)")  # fmt: skip
    return path


@pytest.fixture(scope="module")
def cluster(database):
    require_redis()
    prefix = unique_prefix()
    env = cluster_env(REDIS_URL, prefix, database)
    servers: dict[str, Server] = {}
    try:
        servers["uvicorn-a"] = start_server("uvicorn", extra_env=env)
        servers["uvicorn-b"] = replace(start_server("uvicorn", extra_env=env), prefix="/async")
        servers["gthread"] = start_server(
            "gunicorn-gthread", extra_env=env, extra_args=("--workers", "2")
        )
        servers["gevent"] = start_server("gunicorn-gevent", extra_env=env)
        yield Cluster(servers, env)
    finally:
        for server in servers.values():
            server.stop()
        delete_prefix(REDIS_URL, prefix)


def join(server: Server, room: str, **kwargs):
    client = connect_to(server, f"/room/{room}/", legacy=True, **kwargs)
    assert client.recv(timeout(5)) == f"in {room}"
    return client


def ask(client, command: str) -> str:
    client.send(command)
    return client.recv(timeout(5))


def wait_for_size(cluster: Cluster, room: str, expected: int, wait: float = 10.0) -> None:
    deadline = time.monotonic() + timeout(wait)
    while True:
        size = int(cluster.outside(f"from django_websocket import group_size\n"
                                   f"print(group_size({room!r}))").stdout)  # fmt: skip
        if size == expected:
            return
        assert time.monotonic() < deadline, f"group_size({room!r}) stayed {size}, not {expected}"
        time.sleep(0.2)


def members_everywhere(cluster: Cluster, room: str) -> list:
    """Clients in ``room`` on every server, on both of gthread's workers."""
    clients = [join(cluster[name], room) for name in ("uvicorn-a", "uvicorn-b", "gevent")]
    tokens: dict[str, object] = {}
    for _ in range(40):
        client = join(cluster["gthread"], room)
        token = ask(client, "whoami").split(".")[0]
        if token in tokens:
            client.close()
        else:
            tokens[token] = client
        if len(tokens) == 2:
            break
    assert len(tokens) == 2, "gunicorn never served from its second worker"
    return clients + list(tokens.values())


def receive_all(client, count: int) -> list:
    return [client.recv(timeout(10)) for _ in range(count)]


def test_a_broadcast_from_a_process_without_websockets_reaches_every_server(cluster):
    """broadcast() in a plain Python process reaches members in five server processes,
    every message, in order."""
    clients = members_everywhere(cluster, "everyone")
    wait_for_size(cluster, "everyone", len(clients))
    cluster.outside(
        "from django_websocket import broadcast, broadcast_json\n"
        "for number in range(100):\n"
        "    broadcast('everyone', str(number))\n"
        "broadcast_json('everyone', {'done': True})\n"
    )
    for client in clients:
        assert receive_all(client, 101) == [str(n) for n in range(100)] + ['{"done":true}']
        client.close()


def test_members_chat_across_processes_and_the_sender_is_excluded(cluster):
    """A view's broadcast reaches the other processes' members, in order, not the sender."""
    sender = join(cluster["uvicorn-b"], "chat")
    others = [join(cluster[name], "chat") for name in ("uvicorn-a", "gthread", "gevent")]
    wait_for_size(cluster, "chat", 4)
    sender.send("say:hello")
    sender.send("count:30")
    expected = ["hello", *(str(n) for n in range(30))]
    for client in others:
        assert receive_all(client, 31) == expected
    assert receive_all(sender, 30) == expected[1:]  # count: includes the sender
    for client in [sender, *others]:
        client.close()


def test_leaving_and_closing_take_members_out_of_the_group_everywhere(cluster):
    """leave stops delivery; a closed or vanished client is no longer counted."""
    stays = join(cluster["gevent"], "exits")
    leaves = join(cluster["uvicorn-a"], "exits")
    closes = join(cluster["gthread"], "exits")
    vanishes = socket.create_connection(("127.0.0.1", cluster["uvicorn-b"].port))
    vanishing = join(cluster["uvicorn-b"], "exits", sock=vanishes)
    wait_for_size(cluster, "exits", 4)
    assert ask(leaves, "leave") == "left"
    closes.close()
    vanishing.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
    vanishing.socket.close()  # a reset, no close frame
    wait_for_size(cluster, "exits", 1)
    cluster.outside("from django_websocket import broadcast\nbroadcast('exits', 'only you')")
    assert stays.recv(timeout(5)) == "only you"
    with pytest.raises(TimeoutError):
        leaves.recv(0.5)
    stays.close()
    leaves.close()


def test_a_server_process_that_dies_drops_out_of_group_size(cluster):
    """A worker killed with SIGKILL stops being counted within the presence timeout."""
    doomed = start_server("uvicorn", extra_env=cluster.env)
    try:
        alive = join(cluster["gevent"], "mortal")
        doomed_clients = [join(doomed, "mortal") for _ in range(3)]
        wait_for_size(cluster, "mortal", 4)
        os.killpg(doomed.process.pid, 9)
        doomed.process.wait()
        started = time.monotonic()
        wait_for_size(cluster, "mortal", 1, wait=8)
        assert time.monotonic() - started < timeout(2 + 3)  # DJWS_PRESENCE_TIMEOUT=2, polled
        alive.close()
        for client in doomed_clients:
            client.close_socket()
    finally:
        doomed.stop()


@pytest.mark.parametrize("name", ["uvicorn-a", "gthread"])
def test_a_client_that_stops_reading_is_closed_with_1013_and_the_others_get_everything(
    cluster, name
):
    """With WEBSOCKET_GROUP_QUEUE=4, a member whose client does not read is closed (1013)
    once it stays over the limit; readers elsewhere miss nothing."""
    room = f"slow-{name}"
    stuck = RawWebSocket(cluster[name].port, f"/room/{room}/")  # reads nothing from here on
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    readers = [join(cluster[other], room) for other in ("uvicorn-b", "gevent")]
    wait_for_size(cluster, room, 3)
    got: dict[int, list] = {index: [] for index in range(len(readers))}

    def read(index: int, client) -> None:
        for _ in range(240):
            got[index].append(len(client.recv(timeout(30))))

    threads = [threading.Thread(target=read, args=item) for item in enumerate(readers)]
    for thread in threads:
        thread.start()
    # Random text: permessage-deflate would shrink a repeated letter to nothing.
    burst = (
        "import base64, os\nfrom django_websocket import broadcast\nfor _ in range(60): "
        "broadcast({!r}, base64.b64encode(os.urandom(49152)).decode())"
    )
    # The kernel's socket buffers take the first few megabytes; past them the member
    # is over its limit, stays over it, and the next message after a second closes it.
    for pause in (1.2, 1.2, 1.2, 0):
        cluster.outside(burst.format(room))
        time.sleep(pause)
    for thread in threads:
        thread.join(timeout(60))
    assert all(sizes == [65536] * 240 for sizes in got.values())
    cluster[name].wait_for_log("with 1013")
    # The stuck client reads again: the connection is over. The close frame reaches it
    # only if it read within WEBSOCKET_CLOSE_TIMEOUT of the decision (gunicorn waits for
    # its write; uvicorn gives up after the close timeout and drops the connection).
    frames, _ = stuck.events_until_eof()
    codes = [Close.parse(frame.data).code for frame in frames if frame.opcode is Opcode.CLOSE]
    assert codes in ([], [1013])
    stuck.close()
    for client in readers:
        client.close()


def http(server: Server, path: str, cookie: str = "") -> tuple[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}")
    if cookie:
        request.add_header("Cookie", cookie)
    with urllib.request.urlopen(request, timeout=timeout(10)) as response:
        set_cookie = response.headers.get("Set-Cookie", "")
        return response.read().decode(), set_cookie.split(";")[0]


def test_a_user_is_reachable_anywhere_and_logging_out_elsewhere_closes_with_1008(cluster):
    """Log in on one server, connect to another, log out on a third: the connection
    gets broadcast_to_user messages, then closes with 1008."""
    body, cookie = http(cluster["gthread"], "/login/ada/")
    assert body == "logged in as ada" and cookie.startswith("sessionid=")
    sync_client = join(cluster["uvicorn-a"], "lobby", additional_headers={"Cookie": cookie})
    async_client = join(cluster["uvicorn-b"], "lobby", additional_headers={"Cookie": cookie})
    anonymous = join(cluster["gevent"], "lobby")
    cluster.outside(
        "from django.contrib.auth.models import User\n"
        "from django_websocket import broadcast_to_user\n"
        "broadcast_to_user(User.objects.get(username='ada'), 'hi ada')\n"
    )
    assert sync_client.recv(timeout(5)) == "hi ada"
    assert async_client.recv(timeout(5)) == "hi ada"
    assert http(cluster["gevent"], "/logout/", cookie)[0] == "logged out"
    for client in (sync_client, async_client):
        with pytest.raises(ConnectionClosed):
            client.recv(timeout(5))
        assert client.close_code == 1008
    with pytest.raises(TimeoutError):
        anonymous.recv(0.3)
    anonymous.close()


def test_redis_stopped_and_started_again_mid_test(database):
    """While a private Redis is down, broadcasts fail at once with BrokerUnavailable (from a
    view and from outside); once it is back, every server resubscribes and delivers again."""
    redis_server = PrivateRedis()
    redis_server.start()
    prefix = unique_prefix()
    env = cluster_env(redis_server.url, prefix, database)
    servers = []
    try:
        servers = [
            start_server("uvicorn", extra_env=env),
            start_server("gunicorn-gthread", extra_env=env),
        ]
        clients = [join(server, "outage") for server in servers]
        clients[0].send("say:before")
        assert clients[1].recv(timeout(5)) == "before"

        redis_server.stop()
        started = time.monotonic()
        reply = ask(clients[0], "all:during")
        assert reply.startswith("unavailable: the Redis broker at redis://127.0.0.1")
        assert time.monotonic() - started < timeout(5)
        failed = outside(env, "from django_websocket import broadcast\nbroadcast('outage', 'x')",
                         check=False)  # fmt: skip
        assert failed.returncode != 0 and "BrokerUnavailable" in failed.stderr

        redis_server.start()
        deadline = time.monotonic() + timeout(20)
        pending = set(range(len(clients)))
        while pending:
            assert time.monotonic() < deadline, "delivery never resumed after Redis came back"
            retry = "try:\n    broadcast('outage', 'after')\nexcept Exception: pass"
            outside(env, "from django_websocket import broadcast\n" + retry)
            for index in list(pending):
                try:
                    if clients[index].recv(0.5) == "after":
                        pending.discard(index)
                except TimeoutError:
                    pass
        for server in servers:
            log = server.wait_for_log("reconnected")
            assert "Redis broker lost" in log
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()
        redis_server.stop()

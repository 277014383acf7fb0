"""django_websocket.test.WebSocketClient: users' own tests of their WebSocket views."""

import asyncio
import threading

import pytest
from django.contrib.auth.models import User
from django.test import SimpleTestCase, TestCase, TransactionTestCase

from django_websocket import ConnectionClosed, broadcast, group_size
from django_websocket.test import WebSocketClient, WebSocketRefused

PREFIXES = ["", "/async"]


class InsideATestCase(TestCase):
    """The view sees the test's uncommitted rows and its logged-in user."""

    client_class = WebSocketClient

    @classmethod
    def setUpTestData(cls):
        cls.alice = User.objects.create_user("alice", password="x")

    def test_sync_and_async_views_see_the_tests_rows_and_user(self):
        User.objects.create(username="bob")
        self.client.force_login(self.alice)
        for prefix in PREFIXES:
            with self.subTest(prefix=prefix), self.client.websocket(f"{prefix}/db_users/") as ws:
                ws.send("names")
                self.assertEqual(ws.receive_json(), {"user": "alice", "names": ["alice", "bob"]})

    def test_rows_the_view_writes_are_seen_by_the_test_and_rolled_back_after(self):
        for prefix in PREFIXES:
            with self.subTest(prefix=prefix), self.client.websocket(f"{prefix}/db_users/") as ws:
                ws.send("add")
                self.assertIn("added-by-view", ws.receive_json()["names"])
            self.assertTrue(User.objects.filter(username="added-by-view").exists())
            User.objects.filter(username="added-by-view").delete()

    def test_a_page_and_a_websocket_share_the_session(self):
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get("/plain/").status_code, 200)
        with self.client.websocket("/db_users/") as ws:
            ws.send("names")
            self.assertEqual(ws.receive_json()["user"], "alice")

    def test_the_test_and_the_view_take_turns_on_the_connection(self):
        with self.client.websocket("/db_users/") as ws:
            for number in range(5):
                User.objects.create(username=f"user{number}")
                ws.send("names")
                self.assertEqual(len(ws.receive_json()["names"]), number + 2)


class TheClientAPI(SimpleTestCase):
    client_class = WebSocketClient

    def test_send_receive_and_close_in_both_directions(self):
        for prefix in PREFIXES:
            with self.subTest(prefix=prefix):
                with self.client.websocket(f"{prefix}/echo/") as ws:
                    ws.send("hello")
                    self.assertEqual(ws.receive(), "hello")
                    ws.send(b"\x00\x01")
                    self.assertEqual(ws.receive(), b"\x00\x01")
                    ws.send_json({"a": [1, "é"]})
                    self.assertEqual(ws.receive_json(), {"a": [1, "é"]})
                    self.assertIsNone(ws.close_code)
                self.assertEqual(ws.close_code, 1000)
                with self.assertRaises(ConnectionClosed):
                    ws.send("too late")

    def test_the_view_closing_is_seen_with_its_code_and_reason(self):
        for prefix in PREFIXES:
            path = f"{prefix}/close_with/?code=4321&reason=bye+now"
            with self.subTest(prefix=prefix), self.client.websocket(path) as ws:
                with self.assertRaises(ConnectionClosed) as closed:
                    ws.receive()
                self.assertEqual((closed.exception.code, ws.close_code), (4321, 4321))
                self.assertEqual(ws.close_reason, "bye now")

    def test_receive_times_out_and_receive_nothing_keeps_the_message(self):
        with self.client.websocket("/echo/") as ws:
            with self.assertRaises(TimeoutError):
                ws.receive(timeout=0.05)
            ws.send("later")
            self.assertFalse(ws.receive_nothing(timeout=1))
            self.assertEqual(ws.receive(), "later")
            self.assertTrue(ws.receive_nothing(timeout=0.05))

    def test_the_request_reaches_the_view_as_on_a_server(self):
        for prefix in PREFIXES:
            with (
                self.subTest(prefix=prefix),
                self.client.websocket(f"{prefix}/info/lobby/7/?q=1") as ws,
            ):
                info = ws.receive_json()
            self.assertEqual(info["path"], f"{prefix}/info/lobby/7/")
            self.assertEqual((info["room"], info["number"], info["query"]), ("lobby", 7, "1"))
            self.assertEqual(info["uri"], f"http://testserver{prefix}/info/lobby/7/?q=1")
            self.assertFalse(info["secure"])
            self.assertTrue(info["is_websocket"])
        with self.client.websocket("/info/", secure=True) as ws:
            info = ws.receive_json()
        self.assertEqual((info["secure"], info["uri"]), (True, "https://testserver/info/"))

    def test_subprotocols_are_offered_in_order(self):
        for prefix in PREFIXES:
            offered = ["chat.v1", "x"]
            with (
                self.subTest(prefix=prefix),
                self.client.websocket(f"{prefix}/chat/", subprotocols=offered) as ws,
            ):
                self.assertEqual(ws.receive(), "protocol=chat.v1")
                self.assertEqual(ws.subprotocol, "chat.v1")

    def test_a_cross_origin_socket_is_refused_with_403(self):
        with self.assertRaises(WebSocketRefused) as refused:
            self.client.websocket("/echo/", origin="https://evil.example").__enter__()
        self.assertEqual(refused.exception.status_code, 403)
        self.assertIn(b"Origin", refused.exception.response.content)
        with self.client.websocket("/echo/", origin=None) as ws:  # not a browser: no cookies
            ws.send("no origin")
            self.assertEqual(ws.receive(), "no origin")

    def test_a_view_that_closes_before_accepting_refuses_with_403(self):
        for prefix in PREFIXES:
            with self.subTest(prefix=prefix), self.assertRaises(WebSocketRefused) as refused:
                self.client.websocket(f"{prefix}/refuse_by_close/").__enter__()
            self.assertEqual(refused.exception.status_code, 403)

    def test_a_view_that_returns_a_response_refuses_with_it(self):
        with self.assertRaises(WebSocketRefused) as refused:
            self.client.websocket("/forbidden/").__enter__()
        self.assertEqual(refused.exception.status_code, 403)
        self.assertEqual(refused.exception.response.content, b"no entry\n")

    def test_login_required_redirects_to_the_login_page(self):
        with self.assertRaises(WebSocketRefused) as refused:
            self.client.websocket("/private/").__enter__()
        self.assertEqual(refused.exception.status_code, 302)
        self.assertEqual(refused.exception.response["Location"], "/login/?next=/private/")

    def test_an_exception_in_the_view_is_raised_in_the_test(self):
        for prefix in PREFIXES:
            with (
                self.subTest(prefix=prefix),
                self.client.websocket(f"{prefix}/fail_after_hello/") as ws,
            ):
                self.assertEqual(ws.receive(), "hello")
                ws.send("go")
                with self.assertRaisesMessage(ValueError, "the view broke"):
                    ws.receive()
                self.assertEqual(ws.close_code, 1011)

    def test_without_raise_request_exception_the_test_sees_the_1011_close(self):
        client = WebSocketClient(raise_request_exception=False)
        with (
            self.assertLogs("django.request", "ERROR"),
            client.websocket("/fail_after_hello/") as ws,
        ):
            ws.receive()
            ws.send("go")
            with self.assertRaises(ConnectionClosed):
                ws.receive()
        self.assertEqual(ws.close_code, 1011)

    def test_an_exception_before_the_handshake_is_raised_or_is_a_500(self):
        with self.assertRaisesMessage(ValueError, "before the handshake"):
            self.client.websocket("/fail_before_accept/").__enter__()
        client = WebSocketClient(raise_request_exception=False)
        with (
            self.assertLogs("django.request", "ERROR"),
            self.assertRaises(WebSocketRefused) as refused,
        ):
            client.websocket("/fail_before_accept/").__enter__()
        self.assertEqual(refused.exception.status_code, 500)

    def test_the_client_still_does_http(self):
        response = self.client.get("/plain/", headers={"X-Trace": "t"})
        self.assertEqual(response.status_code, 200)

    def test_iteration_stops_at_the_close(self):
        with self.client.websocket("/close_with/") as ws:
            self.assertEqual(list(ws), [])
        self.assertEqual(ws.close_code, 1000)

    def test_no_thread_is_left_behind(self):
        before = threading.active_count()
        for prefix in PREFIXES:
            with self.client.websocket(f"{prefix}/echo/") as ws:
                ws.send("x")
                ws.receive()
        self.assertLessEqual(threading.active_count(), before)

    def test_broadcast_reaches_a_test_client_member(self):
        for prefix in PREFIXES:
            room = f"{prefix}/room/lobby/"
            with (
                self.subTest(prefix=prefix),
                self.client.websocket(room) as first,
                self.client.websocket(room) as second,
            ):
                self.assertEqual(first.receive(), "in lobby")
                self.assertEqual(second.receive(), "in lobby")
                self.assertEqual(group_size("lobby"), 2)
                broadcast("lobby", "from the test")
                self.assertEqual(first.receive(), "from the test")
                self.assertEqual(second.receive(), "from the test")
                first.send("say:hi")
                self.assertEqual(second.receive(), "hi")
                self.assertTrue(first.receive_nothing())


class InAsyncTests(TestCase):
    client_class = WebSocketClient

    async def test_async_sessions_see_the_tests_rows(self):
        await User.objects.acreate(username="carol")
        for prefix in PREFIXES:
            async with self.client.awebsocket(f"{prefix}/db_users/") as ws:
                await ws.send("names")
                self.assertEqual((await ws.receive_json())["names"], ["carol"])
                await ws.send_json({"ignored": True})
                self.assertEqual((await ws.receive_json())["names"], ["carol"])
            self.assertEqual(ws.close_code, 1000)

    async def test_async_refusals_and_timeouts(self):
        with self.assertRaises(WebSocketRefused):
            async with self.client.awebsocket("/echo/", origin="https://evil.example"):
                pass
        async with self.client.awebsocket("/async/echo/") as ws:
            with self.assertRaises(TimeoutError):
                await ws.receive(timeout=0.05)
            await ws.send("x")
            self.assertEqual([m async for m in _take(ws, 1)], ["x"])


async def _take(ws, count):
    for _ in range(count):
        yield await ws.receive()


class InATransactionTestCase(TransactionTestCase):
    client_class = WebSocketClient

    def test_committed_rows_are_seen_too(self):
        User.objects.create(username="dave")
        with self.client.websocket("/db_users/") as ws:
            ws.send("names")
            self.assertEqual(ws.receive_json()["names"], ["dave"])


@pytest.mark.django_db
def test_pytest_style_with_the_db_fixture():
    User.objects.create(username="erin")
    client = WebSocketClient()
    with client.websocket("/async/db_users/") as ws:
        ws.send("names")
        assert ws.receive_json()["names"] == ["erin"]


def test_pytest_style_in_an_async_test():
    async def main():
        client = WebSocketClient()
        async with client.awebsocket("/async/echo/") as ws:
            await ws.send("hi")
            assert await ws.receive() == "hi"

    asyncio.run(main())

"""The blocking connection over a taken-over socket, driven by hand-made client frames."""

import socket
import time

from websockets.frames import Close, Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from django_websocket.protocol import EngineLimits, open_blocking_connection
from django_websocket.wsgi import WSGIConnection


def client_frame(opcode, data):
    return Frame(opcode, data).serialize(mask=True)


def test_a_view_that_sees_the_client_close_can_read_every_message_before_it():
    # The engine leaves OPEN when it parses the close frame, before it hands the
    # messages that came with it to the reader: `closed` must wait for those.
    burst = b"".join(
        [client_frame(Opcode.TEXT, text.encode()) for text in "abc"]
        + [client_frame(Opcode.CLOSE, Close(1000, "").serialize())]
    )
    limits = EngineLimits(ping_interval=None, compression=None)
    for _ in range(200):
        server_side, client_side = socket.socketpair()
        with client_side:
            engine = open_blocking_connection(server_side.dup(), ServerProtocol(state=OPEN), limits)
            connection = WSGIConnection({}, server_side, engine)
            client_side.sendall(burst)
            deadline = time.monotonic() + 5
            while not connection.closed and time.monotonic() < deadline:
                pass
            assert connection.closed
            assert [connection.receive(0) for _ in range(3)] == ["a", "b", "c"]
            assert connection.close_info == (1000, "")
            connection.finish()
            server_side.close()

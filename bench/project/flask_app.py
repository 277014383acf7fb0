"""Flask-Sock echo, the WSGI alternative to our sync view (gunicorn gthread)."""

from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)


@sock.route("/echo")
def echo(ws) -> None:
    while True:
        ws.send(ws.receive())

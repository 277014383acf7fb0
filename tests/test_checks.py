"""System checks catch the mistakes users make, with stable ids."""

from django.test import override_settings

from django_websocket.checks import check_installed_apps, check_middleware, check_settings

MIDDLEWARE = "django_websocket.middleware.WebSocketMiddleware"


def ids(messages):
    return [message.id for message in messages]


def test_app_above_staticfiles_is_fine():
    """The test settings list django_websocket first: no warning."""
    assert check_installed_apps() == []


def test_app_after_staticfiles_warns_w001():
    """staticfiles listed first would shadow our runserver."""
    with override_settings(INSTALLED_APPS=["django.contrib.staticfiles", "django_websocket"]):
        assert ids(check_installed_apps()) == ["django_websocket.W001"]
    with override_settings(
        INSTALLED_APPS=["django.contrib.staticfiles", "django_websocket.apps.DjangoWebSocketConfig"]
    ):
        assert ids(check_installed_apps()) == ["django_websocket.W001"]


def test_middleware_mistakes_are_reported():
    """Old MIDDLEWARE_CLASSES, the app in MIDDLEWARE and duplicates each have an id."""
    with override_settings(MIDDLEWARE_CLASSES=[MIDDLEWARE]):
        assert "django_websocket.E002" in ids(check_middleware())
    with override_settings(MIDDLEWARE=["django_websocket"]):
        assert "django_websocket.E003" in ids(check_middleware())
    with override_settings(MIDDLEWARE=[MIDDLEWARE, MIDDLEWARE]):
        assert ids(check_middleware()) == ["django_websocket.W004"]
    with override_settings(MIDDLEWARE=[MIDDLEWARE]):
        assert check_middleware() == []


def test_settings_of_the_wrong_type_are_errors():
    """Each WEBSOCKET_* setting is type-checked (E005)."""
    assert check_settings() == []
    bad = {
        "WEBSOCKET_ACCEPT_ALL": "yes",
        "WEBSOCKET_ALLOWED_ORIGINS": "https://example.com",
        "WEBSOCKET_MAX_MESSAGE_SIZE": -1,
        "WEBSOCKET_PING_INTERVAL": "20",
        "WEBSOCKET_MAX_QUEUE": 0,
        "WEBSOCKET_COMPRESSION": "gzip",
    }
    with override_settings(**bad):
        messages = check_settings()
    assert ids(messages) == ["django_websocket.E005"] * 6
    assert any("WEBSOCKET_ALLOWED_ORIGINS must be a list of origins" in m.msg for m in messages)
    with override_settings(WEBSOCKET_MAX_MESSAGE_SIZE=None, WEBSOCKET_COMPRESSION=None):
        assert check_settings() == []


def test_a_broker_url_that_is_not_redis_is_an_error():
    """WEBSOCKET_BROKER_URL with another scheme is E006; Redis URLs and None pass."""
    from django_websocket.checks import check_broker

    with override_settings(WEBSOCKET_BROKER_URL="amqp://guest:secret@rabbit/"):
        messages = check_broker()
    assert ids(messages) == ["django_websocket.E006"] and "secret" not in messages[0].msg
    for url in (None, "redis://127.0.0.1:6379/0", "rediss://host/1", "unix:///tmp/r.sock"):
        with override_settings(WEBSOCKET_BROKER_URL=url):
            assert check_broker() == []

"""conf: settings are read once and read again whenever Django says one changed."""

from django.test import override_settings

from django_websocket import conf


def test_get_follows_override_settings_both_ways():
    """get returns the default, the overridden value inside override_settings, then the default."""
    assert conf.get("WEBSOCKET_MAX_QUEUE") == 16
    with override_settings(WEBSOCKET_MAX_QUEUE=3):
        assert conf.get("WEBSOCKET_MAX_QUEUE") == 3
    assert conf.get("WEBSOCKET_MAX_QUEUE") == 16


def test_built_objects_follow_the_settings_they_come_from():
    """engine_limits and origin_policy are rebuilt after a change, and kept otherwise."""
    assert conf.engine_limits() is conf.engine_limits()
    with override_settings(WEBSOCKET_MAX_MESSAGE_SIZE=1234):
        assert conf.engine_limits().max_message_size == 1234
    assert conf.engine_limits().max_message_size == conf.DEFAULTS["WEBSOCKET_MAX_MESSAGE_SIZE"]
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://trusted.example"]):
        assert "https://trusted.example" in conf.origin_policy().trusted
    assert "https://trusted.example" not in conf.origin_policy().trusted

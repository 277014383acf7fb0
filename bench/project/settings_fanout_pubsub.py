"""Fan-out bench settings for Django Channels on channels_redis' RedisPubSubChannelLayer."""

from .settings_fanout_channels import *  # noqa: F403
from .settings_fanout_channels import _PREFIX, _REDIS

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [f"redis://{_REDIS}:6379/0"],
            "prefix": _PREFIX + "asgi",
        },
    }
}

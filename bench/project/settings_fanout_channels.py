"""Fan-out bench settings for Django Channels on channels_redis' RedisChannelLayer.

``capacity`` is raised from its default of 100 to 1000: group_send puts one
message per server process (listing that process's members) on the process's
channel key, so 100 would already cover the 50-message burst, but a slow
process must not drop messages in the comparison. ``group_expiry`` (86400 s)
and ``expiry`` (60 s) keep their defaults. The prefix is per run, as in
settings_fanout.py.
"""

import os

from .settings import *  # noqa: F403

ROOT_URLCONF = "project.urls_fanout"
_REDIS = os.environ.get("BENCH_FANOUT_REDIS_HOST", "127.0.0.1")
_PREFIX = os.environ.get("BENCH_FANOUT_PREFIX", "bench-fanout:")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [(_REDIS, 6379)],
            "prefix": _PREFIX + "asgi",
            "capacity": 1000,
        },
    }
}

"""Fan-out bench settings for django_websocket (see ../fanout.py): the Redis broker.

``BENCH_FANOUT_PREFIX`` (set by fanout.py, a fresh one per run) keeps every
run's keys and channels apart from the others' and from anything else in the
Redis database; fanout.py deletes that prefix's keys afterwards (never FLUSHDB).
"""

import os

from .settings import *  # noqa: F403

ROOT_URLCONF = "project.urls_fanout"
WEBSOCKET_BROKER_URL = os.environ.get("BENCH_FANOUT_REDIS", "redis://127.0.0.1:6379/0")
WEBSOCKET_BROKER_PREFIX = os.environ.get("BENCH_FANOUT_PREFIX", "bench-fanout:")
# 500 sync views per process, each holding a thread: well under this.
WEBSOCKET_MAX_SYNC_CONNECTIONS = 2000

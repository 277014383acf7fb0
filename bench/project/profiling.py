"""Opt-in cProfile of a server process, for ``asgi_echo.py --profile``.

With ``BENCH_CPROFILE=/path/out.prof`` in the environment, SIGUSR1 starts
profiling the event loop's thread and SIGUSR2 stops it and writes the stats,
so only the measured window is profiled (no start-up, no handshakes).
"""

import cProfile
import os
import signal

_out = os.environ.get("BENCH_CPROFILE")
if _out:
    _profiler = cProfile.Profile()

    def _start(signum, frame):
        _profiler.enable()

    def _stop(signum, frame):
        _profiler.disable()
        _profiler.dump_stats(_out)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)

"""The tiny project the benchmarks serve (see ../run.py, ../asgi_echo.py, ../fanout.py)."""

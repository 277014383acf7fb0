"""The tiny project the ASGI echo benchmark serves (see ../asgi_echo.py)."""

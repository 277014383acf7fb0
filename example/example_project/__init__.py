"""The django-websocket demo project: an echo and a lowercase WebSocket view."""

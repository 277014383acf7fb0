"""The echo views: the async API and the blocking one, and both resolving the user first."""

from django_websocket import require_websocket


@require_websocket
async def echo_async(request):
    async for message in request.websocket:
        await request.websocket.send(message)


@require_websocket
def echo_sync(request):
    for message in request.websocket:
        request.websocket.send(message)


@require_websocket
async def echo_async_user(request):
    """As a real view would: look at the user (as Channels' AuthMiddleware does) first."""
    await request.auser()
    async for message in request.websocket:
        await request.websocket.send(message)


@require_websocket
def echo_sync_user(request):
    request.user.is_authenticated  # noqa: B018 - resolves the lazy user, as a real view would
    for message in request.websocket:
        request.websocket.send(message)

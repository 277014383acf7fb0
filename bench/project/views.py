"""The two echo views: the async API and the blocking one."""

from django_websocket import require_websocket


@require_websocket
async def echo_async(request):
    async for message in request.websocket:
        await request.websocket.send(message)


@require_websocket
def echo_sync(request):
    for message in request.websocket:
        request.websocket.send(message)

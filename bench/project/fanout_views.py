"""The fan-out bench's views: every connection joins the group "bench" and stays."""

from django_websocket import require_websocket


@require_websocket
async def fanout_async(request):
    ws = request.websocket
    await ws.join("bench")
    async for message in ws:  # noqa: B007 - keeps the connection open until the client closes
        pass


@require_websocket
def fanout_sync(request):
    ws = request.websocket
    ws.join("bench")
    for message in ws:  # noqa: B007
        pass

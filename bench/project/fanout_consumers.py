"""The fan-out bench's Channels consumer: joins the group "bench" and relays its messages."""

from channels.generic.websocket import AsyncWebsocketConsumer


class FanoutConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add("bench", self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard("bench", self.channel_name)

    async def bench_message(self, event):
        await self.send(text_data=event["text"])

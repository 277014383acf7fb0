"""Middleware that record what runs, to compare the WebSocket path with Django's HTTP path."""

from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.utils.deprecation import MiddlewareMixin

#: What the recording middleware saw, in order.
EVENTS: list[str] = []


class _Recording(MiddlewareMixin):
    name = ""

    def process_request(self, request):
        EVENTS.append(f"{self.name}.request")
        action = request.GET.get(self.name)
        if action == "answer":
            return HttpResponse(f"answered by {self.name}", status=409)
        if action == "raise":
            raise PermissionDenied(f"refused by {self.name}")
        return None

    def process_response(self, request, response):
        EVENTS.append(f"{self.name}.response {response.status_code}")
        if request.GET.get(self.name) == "raise-late":
            raise ValueError(f"{self.name} failed on the way out")
        return response


class A(_Recording):
    name = "a"


class B(_Recording):
    name = "b"


class C(_Recording):
    name = "c"


class OwnCall:
    """Not a MiddlewareMixin: the runs of fused hooks stop at it."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response

    async def __call__(self, request):
        EVENTS.append("own.before")
        response = await self.get_response(request)
        EVENTS.append("own.after")
        return response


class SyncOnly:
    """A plain sync middleware (no async support): it holds its thread while the view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

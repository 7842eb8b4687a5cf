"""What routes depend on: the app's one :class:`~spymaster.serving.Service`, its ``max_k``, and the API key.

The key itself is checked by the outermost middleware (:class:`spymaster.api.app.Guard`) so that a
wrong key is a 401 before any route runs; the header dependency here makes it visible in OpenAPI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from spymaster.serving import Service

API_KEY_HEADER = "X-API-Key"


def get_service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def get_max_k(request: Request) -> int:
    return int(request.app.state.settings.max_k)


ServiceDep = Annotated[Service, Depends(get_service)]
MaxK = Annotated[int, Depends(get_max_k)]


def api_key_dependencies(required: bool) -> list[Any]:
    """The ``/v1`` router's dependencies: the API-key header when a key is configured."""
    return [Depends(APIKeyHeader(name=API_KEY_HEADER, auto_error=False))] if required else []

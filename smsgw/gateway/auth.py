"""Who is calling: bearer tokens checked against configured sha256 hashes, in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from aiohttp import web

from smsgw.errors import Unauthorized
from smsgw.settings import Client

__all__ = ["Authenticator", "bearer_token"]


class Authenticator:
    """Compares the token's digest with every client's (no early exit), so timing says nothing useful."""

    def __init__(self, clients: Sequence[Client]) -> None:
        self._clients = tuple(clients)

    def identify(self, token: str | None) -> Client | None:
        if not token:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for client in self._clients:
            if hmac.compare_digest(client.token_sha256, digest):
                found = client
        return found

    def require(self, token: str | None) -> Client:
        client = self.identify(token)
        if client is None:
            raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
        return client


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None

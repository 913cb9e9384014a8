"""Who may call the admin API: KumoMTA's rule (trusted hosts need nothing), then credentials.

A request from a trusted network (KumoMTA's `trusted_hosts`, default the loopback addresses)
passes without credentials. Any other needs `Authorization: Bearer <token>` with one of the
tokens, or `Authorization: Basic` with one of the user:password pairs; else 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..core.runtime.settings import Network

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _equal_to_any(given: str, secrets: tuple[str, ...]) -> bool:
    # compare_digest against every one, no early exit: the time says nothing of a prefix.
    results = [hmac.compare_digest(given.encode(), s.encode()) for s in secrets]
    return any(results)


@dataclass(frozen=True)
class AdminAuth:
    tokens: tuple[str, ...] = ()
    basic_users: tuple[str, ...] = ()  # each "user:password"
    trusted: tuple[Network, ...] = ()

    def is_trusted(self, remote: str | None) -> bool:
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def allows(self, remote: str | None, authorization: str) -> bool:
        """Whether a request from `remote` with this Authorization header may proceed."""
        if self.is_trusted(remote):
            return True
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() == "bearer" and self.tokens:
            return _equal_to_any(given, self.tokens)
        if scheme.lower() == "basic" and self.basic_users:
            try:
                pair = base64.b64decode(given, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return _equal_to_any(pair, self.basic_users)
        return False

    def middleware(self) -> Any:
        @web.middleware
        async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.allows(request.remote, request.headers.get("Authorization", "")):
                raise web.HTTPUnauthorized(
                    text="credentials required: a bearer token or HTTP Basic user "
                    "(or a request from a trusted host)",
                    headers={"WWW-Authenticate": 'Basic realm="relaystream-admin"'},
                )
            return await handler(request)

        return check

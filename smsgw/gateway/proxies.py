"""The caller's address behind trusted proxies (an Ingress controller), for the callback allowlist and logs.

``X-Forwarded-For`` is believed only from a direct peer in ``SMSGW_TRUSTED_PROXIES``; then the address is the
right-most one in the header that is not itself a trusted proxy (each proxy appends the address it saw, so
everything left of the last untrusted hop may have been written by the caller). Without trusted proxies, or
from any other peer, the header is ignored and the address is the socket's peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from aiohttp import hdrs, web

__all__ = ["client_address"]

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def _parse(text: str) -> Address | None:
    """One hop of the header: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1`` or ``[2001:db8::1]:443``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


def _trusted(address: Address | None, networks: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The address that called: the peer, or the forwarded one when the peer is a trusted proxy."""
    peer = request.remote or ""
    if not trusted or not _trusted(_parse(peer), trusted):
        return peer
    headers = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
    hops = [hop for header in headers for hop in header.split(",") if hop.strip()]
    address = peer
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:
            return hop.strip()[:64]  # not an address: never matches an allowlist; shown as given, bounded
        address = str(parsed)
        if not _trusted(parsed, trusted):
            return address
    return address  # every hop is a trusted proxy: the left-most is as far as anyone can see

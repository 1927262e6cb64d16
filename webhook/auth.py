"""Authentication of TradingView alerts: pure checks, each raising :class:`Rejected`.

TradingView itself cannot sign (it sends the alert text and nothing else), so three modes can be
required together: an HMAC-SHA256 ``X-Signature`` for relays that sign, a passphrase inside the
alert (what TradingView users usually do), and an allow-list of source networks.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from typing import Any, Final

TRADINGVIEW_ADDRESSES: Final = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")


class Rejected(Exception):
    """The request is refused with ``status`` and a short ``reason`` for the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign(body: bytes, secret: bytes) -> str:
    """The ``X-Signature`` value for ``body``: hex HMAC-SHA256 under ``secret``."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: bytes) -> None:
    if not header:
        raise Rejected(401, "missing X-Signature")
    given = header.strip()
    if given.startswith("sha256="):
        given = given[len("sha256=") :]
    if not hmac.compare_digest(given.lower().encode(), sign(body, secret).encode()):
        raise Rejected(401, "bad X-Signature")


def take_passphrase(alert: dict[str, Any], expected: bytes) -> None:
    """Check and remove the alert's ``passphrase`` field (it must never be published)."""
    given = alert.pop("passphrase", None)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected):
        raise Rejected(401, "bad passphrase")


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def parse_networks(spec: str) -> Networks:
    """``tradingview`` (its four published addresses), addresses and CIDRs, comma-separated."""
    entries: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        entries.extend(TRADINGVIEW_ADDRESSES if part == "tradingview" else [part])
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def source_address(peer: str | None, forwarded: Sequence[str] | None) -> str:
    """The client's address: the peer's, or, when the trusted proxy's header is configured
    (``forwarded``: every line of it, in order), the right-most address in it, the one our
    proxy added. A client can send the header too, but whatever it writes comes before what
    the proxy appends, whether in the same line or in a line of its own."""
    if forwarded:
        return ",".join(forwarded).split(",")[-1].strip()
    return peer or ""


def check_source(address: str, networks: Networks) -> None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise Rejected(403, "source address not allowed") from None
    if not any(ip in network for network in networks):
        raise Rejected(403, "source address not allowed")

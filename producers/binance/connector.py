"""binance-connector, imported here only: the REST client, its two errors and the WebSocket
stream client the connection builds on.

binance-connector is deprecated upstream in favour of Binance's modular SDK (``binance-sdk-spot``).
Swapping that in changes this module: the rest of the package sees :class:`RestClient` (the REST
calls the producers make), :func:`rest_client`, :class:`ClientError`, :class:`ServerError` and
:data:`StreamClientBase`, never a type of binance-connector in a signature.
"""

from __future__ import annotations

from typing import Any, Protocol

import requests
from binance.error import ClientError, ServerError
from binance.spot import Spot
from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

from marketdata.settings import Settings

__all__ = ["ClientError", "RestClient", "ServerError", "StreamClientBase", "rest_client"]

StreamClientBase = SpotWebsocketStreamClient


class RestClient(Protocol):
    """The REST calls the producers make; each answers the decoded JSON (``limit_usage`` and
    ``data`` with ``show_limit_usage``) or raises :class:`ClientError` / :class:`ServerError`."""

    session: requests.Session

    def time(self) -> Any: ...
    def klines(self, symbol: str, interval: str, **kwargs: Any) -> Any: ...
    def historical_trades(self, symbol: str, **kwargs: Any) -> Any: ...
    def agg_trades(self, symbol: str, **kwargs: Any) -> Any: ...


def rest_client(settings: Settings, *, time_unit: str | None = None) -> RestClient:
    """The REST client; ``time_unit="MICROSECOND"`` asks Binance for µs times (the
    ``X-MBX-TIME-UNIT`` header). Either unit is read right (``marketdata.epoch``)."""
    key = settings.binance_api_key.get_secret_value() if settings.binance_api_key else None
    client: RestClient = Spot(api_key=key, base_url=settings.binance_rest, show_limit_usage=True,
                              timeout=30, time_unit=time_unit)  # fmt: skip
    return client

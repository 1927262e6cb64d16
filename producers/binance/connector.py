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

__all__ = [
    "ClientError",
    "RestClient",
    "ServerError",
    "StreamClientBase",
    "asked_time_unit",
    "rest_client",
]

StreamClientBase = SpotWebsocketStreamClient


class RestClient(Protocol):
    """The REST calls the producers make; each answers the decoded JSON (``limit_usage`` and
    ``data`` with ``show_limit_usage``) or raises :class:`ClientError` / :class:`ServerError`."""

    session: requests.Session

    def time(self) -> Any: ...
    def klines(self, symbol: str, interval: str, **kwargs: Any) -> Any: ...
    def historical_trades(self, symbol: str, **kwargs: Any) -> Any: ...
    def agg_trades(self, symbol: str, **kwargs: Any) -> Any: ...


def asked_time_unit(settings: Settings) -> str | None:
    """What binance-connector is told to ask for (``BINANCE_TIME_UNIT``): ``"MICROSECOND"``
    (the ``timeUnit`` stream parameter, the ``X-MBX-TIME-UNIT`` header), or None for Binance's
    default, milliseconds. The stream and every REST client of a process ask for the same unit:
    one trade's time must be the same number whichever path brought it, as it is in the key."""
    return "MICROSECOND" if settings.binance_time_unit == "microsecond" else None


def rest_client(settings: Settings, *, time_unit: str | None = None) -> RestClient:
    """The REST client, asking for ``BINANCE_TIME_UNIT``'s unit unless ``time_unit`` says
    otherwise (``"MICROSECOND"``; ``"MILLISECOND"`` sends no header: Binance's default). Either
    unit is read right (``marketdata.epoch``)."""
    key = settings.binance_api_key.get_secret_value() if settings.binance_api_key else None
    unit = asked_time_unit(settings) if time_unit is None else time_unit
    unit = None if unit is None or unit.upper() == "MILLISECOND" else unit
    client: RestClient = Spot(api_key=key, base_url=settings.binance_rest, show_limit_usage=True,
                              timeout=30, time_unit=unit)  # fmt: skip
    return client

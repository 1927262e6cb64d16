"""The TWS API wire format, server side: 4-byte big-endian length frames of NUL-terminated
fields, and the messages a TWS of server version 176 sends (layouts as ib_async decodes them)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

SERVER_VERSION: Final = 176  # within ib_async's 157-178
MAX_FRAME: Final = 1 << 24  # TWS's own limit on one message
ACCOUNT: Final = "DU1234567"


class WireError(Exception):
    """Not the TWS API: the fake closes the connection, as TWS does."""


def frame(*fields: Any) -> bytes:
    payload = "".join(f"{_text(f)}\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


async def read_handshake(reader: asyncio.StreamReader) -> str:
    """``API\\0`` then one frame with the client's version range, e.g. ``v157..178``."""
    if await reader.readexactly(4) != b"API\0":
        raise WireError("no API\\0 prefix")
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if not 0 < size <= 1024:
        raise WireError(f"bad handshake size {size}")
    return (await reader.readexactly(size)).decode(errors="replace")


async def read_request(reader: asyncio.StreamReader) -> list[str]:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if not 0 < size <= MAX_FRAME:
        raise WireError(f"bad frame size {size}")
    fields = (await reader.readexactly(size)).decode(errors="replace").split("\0")
    return fields[:-1] if fields and fields[-1] == "" else fields


@dataclass(frozen=True, slots=True)
class Instrument:
    """One contract the fake knows, as IB's contract details describe it."""

    conId: int  # noqa: N815 - IB's names, as in the fixture files
    symbol: str
    secType: str  # noqa: N815
    exchange: str
    primaryExchange: str  # noqa: N815
    currency: str
    localSymbol: str  # noqa: N815
    tradingClass: str  # noqa: N815
    minTick: str  # noqa: N815
    longName: str  # noqa: N815
    timeZoneId: str  # noqa: N815
    lastTradeDateOrContractMonth: str = ""  # noqa: N815
    multiplier: str = ""

    def matches(self, request: Sequence[str]) -> bool:
        """Contract fields of a request (conId, symbol, secType, expiry, strike, right,
        multiplier, exchange, primaryExchange, currency, localSymbol, tradingClass)."""
        con_id, symbol, sec_type, expiry, _, _, _, exchange, _, currency, local = request[:11]
        if con_id not in ("", "0"):
            return con_id == str(self.conId)
        return (
            sec_type == self.secType
            and symbol in ("", self.symbol)
            and local in ("", self.localSymbol)
            and currency in ("", self.currency)
            and self.lastTradeDateOrContractMonth.startswith(expiry)
            and exchange in ("", "SMART", self.exchange)
        )


def contract_details(req_id: str, c: Instrument) -> bytes:
    return frame(
        10, req_id, c.symbol, c.secType, c.lastTradeDateOrContractMonth, 0, "", c.exchange,
        c.currency, c.localSymbol, c.tradingClass, c.tradingClass, c.conId, c.minTick,
        c.multiplier, "LMT,MKT", c.exchange, 1, 0, c.longName, c.primaryExchange, "", "", "", "",
        c.timeZoneId, "", "", "", "", 0, 1, "", "", "26", "", "COMMON", "1", "1", "100",
    )  # fmt: skip


def error(req_id: int | str, code: int, text: str) -> bytes:
    return frame(4, 2, req_id, code, text, "")


def tick_by_tick_last(req_id: str, kind: int, time: int, trade: dict[str, Any]) -> bytes:
    return frame(99, req_id, kind, time, trade["price"], trade["size"], trade.get("mask", 0),
                 trade.get("venue", ""), trade.get("conditions", ""))  # fmt: skip


def tick_by_tick_bid_ask(req_id: str, time: int, quote: dict[str, Any]) -> bytes:
    return frame(99, req_id, 3, time, quote["bid"], quote["ask"], quote["bid_size"],
                 quote["ask_size"], quote.get("mask", 0))  # fmt: skip


def realtime_bar(req_id: str, time: int, bar: Sequence[Any]) -> bytes:
    """``bar``: open, high, low, close, volume, wap, count."""
    return frame(50, 3, req_id, time, *bar)


def historical_data(req_id: str, start: str, end: str, rows: Sequence[Sequence[Any]]) -> bytes:
    """``rows``: date, open, high, low, close, volume, wap, count."""
    return frame(17, req_id, start, end, len(rows), *(v for row in rows for v in row))

"""Decoded DTC messages to records: pure functions, no I/O.

Market-data messages name their instrument by the ``SymbolID`` the client chose when it
subscribed, so each function takes the :class:`Instrument` that id stands for. Records carry
the server's own times: ``t_DateTimeWithMilliseconds`` (double seconds) in trades and
historical ticks, ``t_DateTime4Byte`` (uint32 seconds) in bid/ask and compact messages,
``t_DateTime`` (int64 seconds) or, in the current header, ``t_DateTimeWithMicrosecondsInt``
in historical bars and the history trailer (decided by value), ``t_DateTimeWithMicrosecondsInt``
in 144 and 146; 142 and 143 carry none and take the prior trade's or quote's of the session.
A message whose time is unset (0 or ``DBL_MAX``, as a truncated message leaves it) is an
:class:`InvalidRecord`, never "now".

The layouts of the current header's variants (134, 137, 142, 143, 144, 146, 807) are read from
navas8889/dtc-sdk ``DTC/DTCProtocol.h`` at commit 40077a084e39a0e1b235c29907fe881586ad66a5.

DTC trades carry no trade id. The id is derived from the trade's own fields plus its
occurrence number among identical trades in the same timestamp (two real 1-lot trades at one
price in one millisecond are two trades), so the same stream replayed gives the same ids, and
a historical tick record gets the id its live update got.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from marketdata.epoch import epoch_datetime
from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Side, Tick, derived_trade_id
from producers.dtc.messages import AT_ASK, AT_BID, DBL_MAX, FLT_MAX, UINT_MAX

DEFAULT_EXCHANGE: Final = "SIERRA"
TRADE: Final = "dtc.trade"
QUOTE: Final = "dtc.quote"
SNAPSHOT: Final = "dtc.snapshot"
HISTORY: Final = "dtc.history"
# DTC's HistoricalDataIntervalEnum, in seconds; 0 is ticks.
INTERVALS: Final = {
    "tick": 0, "1s": 1, "2s": 2, "4s": 4, "5s": 5, "10s": 10, "30s": 30, "1m": 60, "5m": 300,
    "10m": 600, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200, "1d": 86400, "1w": 604800,
}  # fmt: skip
# The aggressor: a trade at the bid was a sell hitting it, one at the ask a buy lifting it.
_AGGRESSOR: Final[dict[int, Side]] = {AT_BID: "sell", AT_ASK: "buy"}
_FLOAT32: Final = struct.Struct("<f")
_SIDES: Final[tuple[tuple[Side, str], ...]] = (("bid", "Bid"), ("ask", "Ask"))


@dataclass(frozen=True, slots=True)
class Instrument:
    """A DTC symbol and its exchange (``ESZ4`` on ``CME``); written ``ESZ4@CME`` on the
    command line. Records are stored under the exchange, or ``SIERRA`` when none is given."""

    symbol: str
    exchange: str = ""

    @classmethod
    def parse(cls, text: str) -> Instrument:
        symbol, _, exchange = text.strip().partition("@")
        if not symbol:
            raise InvalidRecord("symbol", f"expected SYMBOL or SYMBOL@EXCHANGE, got {text!r}")
        return cls(symbol, exchange)

    @property
    def venue(self) -> str:
        return self.exchange.upper() or DEFAULT_EXCHANGE

    def __str__(self) -> str:
        return f"{self.symbol}@{self.exchange}" if self.exchange else self.symbol


class Occurrences:
    """Counts identical events within one timestamp, per symbol and source; only the latest
    timestamp of each is kept, so memory stays flat."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], tuple[object, dict[tuple[object, ...], int]]] = {}

    def next(self, symbol: str, source: str, when: object, identity: tuple[object, ...]) -> int:
        key = (symbol, source)
        entry = self._latest.get(key)
        if entry is None or entry[0] != when:
            entry = (when, {})
            self._latest[key] = entry
        counts = entry[1]
        number = counts.get(identity, 0)
        counts[identity] = number + 1
        return number

    def latest(self, symbol: str, source: str) -> datetime | None:
        """The newest timestamp seen of ``symbol``'s ``source`` events, or None."""
        entry = self._latest.get((symbol, source))
        return entry[0] if entry is not None and isinstance(entry[0], datetime) else None

    def saw(self, symbol: str, source: str, when: datetime) -> None:
        """A time heard elsewhere (a snapshot's last trade or quote) for the messages without a
        timestamp, which take the prior one; only forwards, so no count of a later time is lost."""
        entry = self._latest.get((symbol, source))
        if entry is None or (isinstance(entry[0], datetime) and entry[0] < when):
            self._latest[(symbol, source)] = (when, {})

    def reset(self) -> None:
        """After a reconnect: a replayed event must get the id it had the first time."""
        self._latest.clear()


def _unset(value: float) -> bool:
    return value == DBL_MAX or value == FLT_MAX  # noqa: PLR1714 - two sentinels, one meaning


def _double(field: str, value: float) -> Decimal:
    if not math.isfinite(value):
        raise InvalidRecord(field, f"must be a finite number, got {value}")
    return Decimal(repr(value))


def _single(field: str, value: float) -> Decimal:
    """A float32 as the shortest decimal that reads back as the same float32 (4500.25, not
    4500.25 with float64 noise): what the sender meant, before float32 rounded it."""
    if not math.isfinite(value):
        raise InvalidRecord(field, f"must be a finite number, got {value}")
    for digits in range(6, 10):
        text = f"{value:.{digits}g}"
        if _FLOAT32.unpack(_FLOAT32.pack(float(text)))[0] == value:
            return Decimal(text)
    return Decimal(repr(value))  # pragma: no cover - 9 significant digits always round-trip


def _set_price(field: str, value: float, single: bool = False) -> Decimal:
    if _unset(value):
        raise InvalidRecord(field, "unset (DBL_MAX)")
    return _single(field, value) if single else _double(field, value)


def time_ms(field: str, value: float) -> datetime:
    """``t_DateTimeWithMilliseconds``: double seconds since the epoch, to the microsecond."""
    if value in (0, DBL_MAX):
        raise InvalidRecord(field, "unset")
    return epoch_datetime(value, field, unit="s")


def time_s(field: str, value: int) -> datetime:
    """``t_DateTime`` (int64) and ``t_DateTime4Byte`` (uint32): whole seconds since the epoch."""
    if value in (0, UINT_MAX):
        raise InvalidRecord(field, "unset")
    return epoch_datetime(value, field, unit="s")


def time_us(field: str, value: int) -> datetime:
    """``t_DateTimeWithMicrosecondsInt`` (int64 microseconds), in the current header's 144/146."""
    if value == 0:
        raise InvalidRecord(field, "unset")
    return epoch_datetime(value, field, unit="us")


def time_s_or_us(field: str, value: int) -> datetime:
    """``t_DateTimeWithMicrosecondsInt`` where the current header says "format can also be
    t_DateTime; check the value" (history records): seconds or microseconds by magnitude, the
    kernel's one rule, since a server may send either."""
    if value in (0, UINT_MAX):
        raise InvalidRecord(field, "unset")
    return epoch_datetime(value, field)


def _trade(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences, *, when: datetime, single: bool,
) -> Tick:  # fmt: skip
    price = _set_price("Price", message["Price"], single)
    size = _single("Volume", message["Volume"]) if single else _double("Volume", message["Volume"])
    at = message["AtBidOrAsk"]
    quote = _Quote(_AGGRESSOR.get(at), price, size, TRADE)
    return _tick(instrument, received_at, occurrences, when, quote,
                 identity=(message["Price"], message["Volume"], at))  # fmt: skip


def trade(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> Tick:  # fmt: skip
    """``MARKET_DATA_UPDATE_TRADE`` (107), and ``HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE``
    (804), which has the same fields: the same trade gets the same record from either."""
    when = time_ms("DateTime", message["DateTime"])
    return _trade(message, instrument, received_at, occurrences, when=when, single=False)


def trade_compact(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> Tick:  # fmt: skip
    """``MARKET_DATA_UPDATE_TRADE_COMPACT`` (112): float32 price and volume, whole seconds."""
    when = time_s("DateTime", message["DateTime"])
    return _trade(message, instrument, received_at, occurrences, when=when, single=True)


def trade_unbundled(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> Tick:  # fmt: skip
    """``MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR_2`` (146): float32 price, whole
    uint32 volume, microsecond time, uint8 AtBidOrAsk."""
    when = time_us("DateTime", message["DateTime"])
    return _whole_trade(message, instrument, received_at, occurrences, when, single=True)


def trade_unbundled_ms(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> Tick:  # fmt: skip
    """``MARKET_DATA_UPDATE_TRADE_WITH_UNBUNDLED_INDICATOR`` (137): double price, whole uint32
    volume, ``t_DateTimeWithMilliseconds``, uint8 AtBidOrAsk."""
    when = time_ms("DateTime", message["DateTime"])
    return _whole_trade(message, instrument, received_at, occurrences, when, single=False)


def trade_no_timestamp(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> Tick:  # fmt: skip
    """``MARKET_DATA_UPDATE_TRADE_NO_TIMESTAMP`` (142): 146 without its time, sent when the
    time has not changed since the prior trade, whose time it takes (Sierra Chart's DTC
    documentation); one before any timed trade of the session has no time to take."""
    when = occurrences.latest(instrument.symbol, TRADE)
    if when is None:
        raise InvalidRecord("DateTime", "a trade without a timestamp before any trade with one")
    return _whole_trade(message, instrument, received_at, occurrences, when, single=True)


def _whole_trade(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences, when: datetime, *, single: bool,
) -> Tick:  # fmt: skip
    """A trade whose volume is a uint32 (137, 142, 146). Its identity is written as a
    ``HISTORICAL_PRICE_DATA_TICK_RECORD_RESPONSE``'s (double price and volume), so that the
    trade fetched again from history by a gap fill gets the id it got live."""
    price = _set_price("Price", message["Price"], single=single)
    at = message["AtBidOrAsk"]
    quote = _Quote(_AGGRESSOR.get(at), price, Decimal(message["Volume"]), TRADE)
    return _tick(instrument, received_at, occurrences, when, quote,
                 identity=(float(price), float(message["Volume"]), at))  # fmt: skip


def last_trade_snapshot(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> list[Tick]:  # fmt: skip
    """``MARKET_DATA_UPDATE_LAST_TRADE_SNAPSHOT`` (134): the last trade as a snapshot has it,
    the same record (source ``dtc.snapshot``, the same id) as ``MARKET_DATA_SNAPSHOT``'s."""
    if _unset(message["LastTradePrice"]):
        return []
    traded_at = time_ms("LastTradeDateTime", message["LastTradeDateTime"])
    occurrences.saw(instrument.symbol, TRADE, traded_at)
    return [_last_trade(message, instrument, received_at, traded_at, None)]


def _last_trade(
    message: dict[str, Any], instrument: Instrument, received_at: datetime, traded_at: datetime,
    extras: dict[str, Any] | None,
) -> Tick:  # fmt: skip
    volume = message["LastTradeVolume"]
    size = Decimal(0) if _unset(volume) else _double("LastTradeVolume", volume)
    identity = (message["LastTradePrice"], volume)
    return Tick(
        exchange=instrument.venue, symbol=instrument.symbol, timestamp=traded_at,
        source=SNAPSHOT, trade_id=derived_trade_id(instrument.symbol, traded_at.isoformat(),
                                                   *identity, "last"),
        price=_double("LastTradePrice", message["LastTradePrice"]), size=size, side=None,
        received_at=received_at, extras=extras,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Quote:
    side: Side | None
    price: Decimal
    size: Decimal
    source: str = QUOTE


def _quote(
    instrument: Instrument, received_at: datetime, occurrences: Occurrences, when: datetime,
    quote: _Quote,
) -> Tick:  # fmt: skip
    identity = (quote.side, str(quote.price), str(quote.size))
    return _tick(instrument, received_at, occurrences, when, quote, identity=identity)


def _tick(
    instrument: Instrument, received_at: datetime, occurrences: Occurrences, when: datetime,
    quote: _Quote, *, identity: tuple[object, ...],
) -> Tick:  # fmt: skip
    """A tick whose id is its ``identity`` and its rank among identical ones at ``when``."""
    number = occurrences.next(instrument.symbol, quote.source, when, identity)
    return Tick(
        exchange=instrument.venue,
        symbol=instrument.symbol,
        timestamp=when,
        source=quote.source,
        trade_id=derived_trade_id(instrument.symbol, when.isoformat(), *identity, number),
        price=quote.price,
        size=quote.size,
        side=quote.side,
        received_at=received_at,
    )


def bid_ask(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences, *, single: bool = False,
) -> list[Tick]:  # fmt: skip
    """``MARKET_DATA_UPDATE_BID_ASK`` (108) and, with ``single``, its compact form (117): a
    quote tick for each side whose price is set (``DBL_MAX``/``FLT_MAX`` means unchanged)."""
    return _bid_ask(message, instrument, received_at, occurrences,
                    time_s("DateTime", message["DateTime"]), single=single)  # fmt: skip


def bid_ask_us(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> list[Tick]:  # fmt: skip
    """``MARKET_DATA_UPDATE_BID_ASK_FLOAT_WITH_MICROSECONDS`` (144): float32 prices and
    quantities (``FLT_MAX`` unset), microsecond time."""
    return _bid_ask(message, instrument, received_at, occurrences,
                    time_us("DateTime", message["DateTime"]), single=True)  # fmt: skip


def bid_ask_no_timestamp(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> list[Tick]:  # fmt: skip
    """``MARKET_DATA_UPDATE_BID_ASK_NO_TIMESTAMP`` (143): float32 prices (``FLT_MAX`` unset),
    whole uint32 quantities, and the time of the prior bid/ask (as 142 takes the prior trade's);
    one before any timed quote of the session has no time to take."""
    when = occurrences.latest(instrument.symbol, QUOTE)
    if when is None:
        raise InvalidRecord("DateTime", "a bid/ask without a timestamp before any with one")
    return _bid_ask(message, instrument, received_at, occurrences, when, single=True,
                    whole=True)  # fmt: skip


def _bid_ask(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences, when: datetime, *, single: bool, whole: bool = False,
) -> list[Tick]:  # fmt: skip
    ticks = []
    for side, prefix in _SIDES:
        raw = message[f"{prefix}Price"]
        if _unset(raw):
            continue
        price = _set_price(f"{prefix}Price", raw, single)
        quantity = message[f"{prefix}Quantity"]
        # float32 in 108, 117 and 144; a uint32 in 143
        size = Decimal(quantity) if whole else _single(f"{prefix}Quantity", quantity)
        ticks.append(_quote(instrument, received_at, occurrences, when, _Quote(side, price, size)))
    return ticks


def snapshot(
    message: dict[str, Any], instrument: Instrument, received_at: datetime,
    occurrences: Occurrences,
) -> list[Tick]:  # fmt: skip
    """``MARKET_DATA_SNAPSHOT`` (104), sent after each subscription: the best bid and ask
    (stamped with the arrival time when the server gives none), and the last trade with the
    session's statistics in its extras; side unknown. Source ``dtc.snapshot``, so that the
    last trade does not pose as a new trade."""
    ticks: list[Tick] = []
    quoted_at = message["BidAskDateTime"]
    when = received_at
    if quoted_at not in (0, DBL_MAX):
        when = time_ms("BidAskDateTime", quoted_at)
        occurrences.saw(instrument.symbol, QUOTE, when)
    for side, prefix in _SIDES:
        raw = message[f"{prefix}Price"]
        quantity = message[f"{prefix}Quantity"]
        if _unset(raw):
            continue
        size = Decimal(0) if _unset(quantity) else _double(f"{prefix}Quantity", quantity)
        quote = _Quote(side, _double(f"{prefix}Price", raw), size, SNAPSHOT)
        ticks.append(_quote(instrument, received_at, occurrences, when, quote))
    if not _unset(message["LastTradePrice"]):
        traded_at = time_ms("LastTradeDateTime", message["LastTradeDateTime"])
        occurrences.saw(instrument.symbol, TRADE, traded_at)
        ticks.append(_last_trade(message, instrument, received_at, traded_at,
                                 _session(message) or None))  # fmt: skip
    return ticks


_SESSION_PRICES: Final = (
    ("session_settlement", "SessionSettlementPrice"), ("session_open", "SessionOpenPrice"),
    ("session_high", "SessionHighPrice"), ("session_low", "SessionLowPrice"),
    ("session_volume", "SessionVolume"),
)  # fmt: skip


def _session(message: dict[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for key, name in _SESSION_PRICES:
        if not _unset(message[name]):
            extras[key] = str(_double(name, message[name]))
    for key, name in (("session_trades", "SessionNumTrades"), ("open_interest", "OpenInterest")):
        if message[name] != UINT_MAX:
            extras[key] = message[name]
    if message["TradingSessionDate"]:
        extras["session_date"] = time_s("TradingSessionDate", message["TradingSessionDate"])
        extras["session_date"] = extras["session_date"].date().isoformat()
    return extras


def trailer_time(message: dict[str, Any]) -> datetime | None:
    """``HISTORICAL_PRICE_DATA_RESPONSE_TRAILER`` (807): the time of the response's last
    record (``t_DateTimeWithMicrosecondsInt``, seconds or microseconds by value as in 803);
    None when unset (a response without records)."""
    value = message["FinalRecordLastDateTime"]
    return None if value == 0 else time_s_or_us("FinalRecordLastDateTime", value)


def history_bar(
    message: dict[str, Any], instrument: Instrument, interval: str, now: datetime
) -> Bar:
    """``HISTORICAL_PRICE_DATA_RECORD_RESPONSE`` (803): one bar, open at ``StartDateTime``;
    closed once its interval has passed by ``now``. ``NumTrades`` shares its bytes with
    ``OpenInterest`` (a C union): it is the trade count for intraday bars only."""
    seconds = INTERVALS[interval]
    opened = time_s_or_us("StartDateTime", message["StartDateTime"])
    return Bar(
        exchange=instrument.venue,
        symbol=instrument.symbol,
        interval=interval,
        timestamp=opened,
        open=_set_price("OpenPrice", message["OpenPrice"]),
        high=_set_price("HighPrice", message["HighPrice"]),
        low=_set_price("LowPrice", message["LowPrice"]),
        close=_set_price("LastPrice", message["LastPrice"]),
        volume=_double("Volume", message["Volume"]),
        trade_count=message["NumTrades"] if seconds < INTERVALS["1d"] else None,
        closed=opened + timedelta(seconds=seconds) <= now,
        source=HISTORY,
    )

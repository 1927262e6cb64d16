"""Instrument specs of the command line (``STK:AAPL:SMART:USD``) to ib_async contracts.

A spec is ``TYPE:SYMBOL:EXCHANGE:CURRENCY[:EXPIRY]``: ``STK`` stocks, ``FUT`` futures (expiry
``YYYYMM`` or ``YYYYMMDD``; or give the local symbol, e.g. ``FUT:ESZ4:CME:USD``), ``CASH`` forex
(``CASH:EUR:IDEALPRO:USD``), ``CRYPTO`` (``CRYPTO:BTC:PAXOS:USD``). Records are named by the
contract's local symbol once IB has qualified it (``AAPL``, ``ESZ4``, ``EUR.USD``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ib_async import Contract, Crypto, Forex, Future, Stock

from marketdata.errors import ConfigError

EXCHANGE: Final = "IBKR"
SEC_TYPES: Final = ("STK", "FUT", "CASH", "CRYPTO")
_CODE = re.compile(r"[A-Z0-9.\- ]{1,32}")
_EXPIRY = re.compile(r"[0-9]{6}([0-9]{2})?")


@dataclass(frozen=True, slots=True)
class Spec:
    """One parsed instrument spec; ``text`` is what the user wrote, for messages."""

    sec_type: str
    symbol: str
    exchange: str
    currency: str
    expiry: str = ""
    text: str = ""

    def contract(self) -> Contract:
        if self.sec_type == "STK":
            return Stock(self.symbol, self.exchange, self.currency)
        if self.sec_type == "CASH":
            return Forex(pair=self.symbol + self.currency, exchange=self.exchange)
        if self.sec_type == "CRYPTO":
            return Crypto(self.symbol, self.exchange, self.currency)
        if self.expiry:
            return Future(self.symbol, self.expiry, self.exchange, currency=self.currency)
        return Future(localSymbol=self.symbol, exchange=self.exchange, currency=self.currency)


def parse_spec(text: str) -> Spec:
    """``TYPE:SYMBOL:EXCHANGE:CURRENCY[:EXPIRY]`` → :class:`Spec`, or a ConfigError saying why."""
    parts = [part.strip().upper() for part in text.split(":")]
    if len(parts) not in (4, 5) or not all(parts):
        raise ConfigError(
            f"instrument {text!r}: expected TYPE:SYMBOL:EXCHANGE:CURRENCY[:EXPIRY],"
            " e.g. STK:AAPL:SMART:USD or FUT:ES:CME:USD:202412"
        )
    sec_type, symbol, exchange, currency, *rest = parts
    if sec_type not in SEC_TYPES:
        raise ConfigError(f"instrument {text!r}: type must be one of {', '.join(SEC_TYPES)}")
    for name, value in (("symbol", symbol), ("exchange", exchange), ("currency", currency)):
        if not _CODE.fullmatch(value):
            raise ConfigError(f"instrument {text!r}: bad {name} {value!r}")
    expiry = rest[0] if rest else ""
    if expiry and (sec_type != "FUT" or not _EXPIRY.fullmatch(expiry)):
        raise ConfigError(f"instrument {text!r}: an expiry (YYYYMM[DD]) is for futures only")
    return Spec(sec_type, symbol, exchange, currency, expiry, text)


def parse_specs(text: str) -> list[Spec]:
    """A comma-separated list of specs; duplicates are dropped, order kept."""
    specs = [parse_spec(part) for part in text.split(",") if part.strip()]
    if not specs:
        raise ConfigError("no instruments given (e.g. --symbols STK:AAPL:SMART:USD)")
    unique = {(s.sec_type, s.symbol, s.exchange, s.currency, s.expiry): s for s in specs}
    return list(unique.values())


def record_symbol(contract: Contract) -> str:
    """How records name a qualified contract: IB's local symbol (``ESZ4``, ``EUR.USD``)."""
    return contract.localSymbol or contract.symbol

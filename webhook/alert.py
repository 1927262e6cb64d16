"""A TradingView alert body to a Tick: pure parsing, errors naming the field.

The alert is the JSON text the user wrote in TradingView's message box, placeholders filled in:

    {"ticker": "{{ticker}}", "exchange": "{{exchange}}", "price": "{{close}}",
     "volume": "{{volume}}", "time": "{{timenow}}", "passphrase": "..."}

``ticker``, ``exchange``, ``price`` and ``time`` are required; ``volume`` (default 0), ``side``
and ``id`` are optional; every other field is kept in the tick's extras.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from marketdata.errors import InvalidRecord
from marketdata.records import Tick, derived_trade_id
from webhook.auth import Rejected

SOURCE: Final = "TradingView"
_KNOWN: Final = {"ticker", "exchange", "price", "volume", "time", "side", "id"}
_decoder: Final = msgspec.json.Decoder()


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        document = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise Rejected(400, f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise Rejected(400, "the alert must be a JSON object")
    return document


def _text(alert: dict[str, Any], field: str) -> str:
    value = alert.get(field)
    if not isinstance(value, str) or not value.strip():
        raise Rejected(422, f"{field}: required, a non-empty string")
    return value.strip()


def _number(alert: dict[str, Any], field: str, default: str | None = None) -> Decimal:
    value = alert.get(field, default)
    if value is None:
        raise Rejected(422, f"{field}: required, a number")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Rejected(422, f"{field}: must be a number, got {type(value).__name__}")
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise Rejected(422, f"{field}: not a number: {value!r}") from None


def _time(alert: dict[str, Any]) -> datetime:
    value = alert.get("time")
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)  # epoch milliseconds
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    raise Rejected(422, "time: required, ISO 8601 (`{{timenow}}`) or epoch milliseconds")


def alert_to_tick(alert: dict[str, Any], body: bytes, received_at: datetime) -> Tick:
    """The tick of an authenticated alert (passphrase already removed)."""
    side = alert.get("side")
    if side is not None and side not in {"buy", "sell"}:
        raise Rejected(422, "side: must be buy or sell")
    trade_id = alert.get("id")
    extras = {k: v for k, v in alert.items() if k not in _KNOWN}
    try:
        return Tick(
            exchange=_text(alert, "exchange").upper(),
            symbol=_text(alert, "ticker").upper(),
            timestamp=_time(alert),
            source=SOURCE,
            # The same alert delivered twice gets the same id, so it deduplicates downstream.
            trade_id=str(trade_id) if trade_id is not None else derived_trade_id(body),
            price=_number(alert, "price"),
            size=_number(alert, "volume", "0"),
            side=side,
            received_at=received_at,
            extras=extras or None,
        )
    except InvalidRecord as exc:
        raise Rejected(422, str(exc)) from None

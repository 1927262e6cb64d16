"""A TradingView alert body to a Tick: pure parsing, errors naming the field.

The alert is the JSON text the user wrote in TradingView's message box, placeholders filled in:

    {"ticker": "{{ticker}}", "exchange": "{{exchange}}", "price": "{{close}}",
     "volume": "{{volume}}", "time": "{{timenow}}", "passphrase": "..."}

``ticker``, ``exchange``, ``price`` and ``time`` are required; ``volume`` (default 0), ``side``
and ``id`` are optional; every other field is kept in the tick's extras.

Both functions are total: any body becomes a dict, a tick, or :class:`Rejected` with a 4xx
status and a reason naming the alert's field (the kernel's record bounds decide what storage
holds; their field names are translated back to the alert's).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from marketdata.epoch import epoch_datetime
from marketdata.errors import InvalidRecord
from marketdata.records import EARLIEST, LATEST, Side, Tick, derived_trade_id
from webhook.auth import Rejected

SOURCE: Final = "TradingView"
# A passphrase is never published, also where MDP_WEBHOOK_AUTH does not check it.
_KNOWN: Final = {"ticker", "exchange", "price", "volume", "time", "side", "id", "passphrase"}
# An alert is a flat object; its extras may nest as deep as the kernel allows (8). Deeper
# documents are refused before any code walks them.
MAX_DEPTH: Final = 16
# The longest ISO 8601 time fromisoformat reads is ~32 characters; more is not a time.
_MAX_TIME_TEXT: Final = 40
_EPOCH_TEXT: Final = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,9})?")
# The kernel names a tick's fields; the client knows the alert's.
_ALERT_FIELD: Final = {"symbol": "ticker", "timestamp": "time", "size": "volume", "trade_id": "id"}
_decoder: Final = msgspec.json.Decoder()


def parse_body(body: bytes) -> dict[str, Any]:
    """The alert's JSON object, or 400. Runs before the passphrase check, on anyone's bytes."""
    try:
        document = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise Rejected(400, f"malformed JSON: {exc}") from None
    except RecursionError:  # msgspec gives up on deep nesting this way, not with DecodeError
        raise Rejected(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if _deeper_than(document, MAX_DEPTH):
        raise Rejected(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    if not isinstance(document, dict):
        raise Rejected(400, "the alert must be a JSON object")
    return document


def _deeper_than(document: object, limit: int) -> bool:
    """Without recursion, so no document can exhaust the stack here either."""
    stack = [(document, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


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
        # repr, not str, of a float: the shortest text that reads back as the same float.
        return Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise Rejected(422, f"{field}: not a number: {value!r:.40}") from None


def _time(alert: dict[str, Any]) -> datetime:
    """Epoch numbers by the kernel's one unit rule; ISO 8601 text with an offset."""
    value = alert.get("time")
    if value is None:
        raise Rejected(422, "time: required, ISO 8601 with an offset (`{{timenow}}`) or epoch")
    if not isinstance(value, str):
        return epoch_datetime(value, "time")  # InvalidRecord names the field
    text = value.strip()
    if _EPOCH_TEXT.fullmatch(text):
        return epoch_datetime(text, "time")  # Pine's str.tostring(time): milliseconds
    if len(text) > _MAX_TIME_TEXT:
        raise Rejected(422, f"time: not an ISO 8601 time ({len(text)} characters)")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(422, f"time: not an ISO 8601 time: {text!r}") from None
    if parsed.utcoffset() is None:
        raise Rejected(422, f"time: naive (no offset), say Z or +hh:mm: {text!r}")
    # Checked on the local year first: converting year 1 or 9999 to UTC can overflow.
    if not EARLIEST.year <= parsed.year < LATEST.year or not (
        EARLIEST <= parsed.astimezone(UTC) < LATEST
    ):
        raise Rejected(422, f"time: out of range [{EARLIEST.year}, {LATEST.year}): {text!r}")
    return parsed.astimezone(UTC)


def _trade_id(alert: dict[str, Any], body: bytes) -> str:
    trade_id = alert.get("id")
    if trade_id is None:
        # The same alert delivered twice gets the same id, so it deduplicates downstream.
        return derived_trade_id(body)
    if isinstance(trade_id, bool) or not isinstance(trade_id, (str, int)):
        raise Rejected(422, f"id: must be a string or an integer, got {type(trade_id).__name__}")
    return str(trade_id)


def alert_to_tick(alert: dict[str, Any], body: bytes, received_at: datetime) -> Tick:
    """The tick of an authenticated alert (passphrase already removed)."""
    side: Side | None = alert.get("side")
    if side is not None and (not isinstance(side, str) or side not in {"buy", "sell"}):
        raise Rejected(422, f"side: must be buy or sell, got {side!r:.40}")
    extras = {k: v for k, v in alert.items() if k not in _KNOWN}
    try:
        return Tick(
            exchange=_text(alert, "exchange").upper(),
            symbol=_text(alert, "ticker").upper(),
            timestamp=_time(alert),
            source=SOURCE,
            trade_id=_trade_id(alert, body),
            price=_number(alert, "price"),
            size=_number(alert, "volume", "0"),
            side=side,
            received_at=received_at,
            extras=extras or None,
        )
    except InvalidRecord as exc:
        field = _ALERT_FIELD.get(exc.field, exc.field)
        raise Rejected(422, f"{field}: {exc.problem}") from None

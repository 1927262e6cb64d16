"""A TradingView alert body to a Tick: pure parsing, errors naming the field.

The alert is the JSON text the user wrote in TradingView's message box, placeholders filled in:

    {"ticker": "{{ticker}}", "exchange": "{{exchange}}", "price": "{{close}}",
     "volume": "{{volume}}", "time": "{{timenow}}", "passphrase": "..."}

Which paths of the body become the tick's fields is :mod:`webhook.mapping`'s documented table
(``bar.close``, ``strategy.order.price``, ``symbol``, ``EXCHANGE:SYMBOL`` …); a symbol and a
price are required, the exchange defaults to ``MDP_WEBHOOK_DEFAULT_EXCHANGE``, the time to the
moment the alert was received, the size to 0; every other field is kept in the tick's extras.
A placeholder TradingView did not fill (``{{…}}`` left in the text) is a 400 naming it.

Both functions are total: any body becomes a dict, a tick, or :class:`Rejected` with a 4xx
status and a reason naming the alert's field (the kernel's record bounds decide what storage
holds; their field names are translated back to the alert's).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from marketdata.epoch import epoch_datetime
from marketdata.errors import InvalidRecord
from marketdata.records import EARLIEST, LATEST, Side, Tick, derived_trade_id
from webhook.auth import Rejected
from webhook.mapping import FieldMap, is_missing, lookup, without

SOURCE: Final = "TradingView"
DEFAULT_MAP: Final = FieldMap()
# No market data this webhook takes is older; a clock that far wrong is a wrong alert.
OLDEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_SLACK: Final = timedelta(days=1)
_PLACEHOLDER: Final = re.compile(r"\{\{\s*([^{}\r\n]{1,64}?)\s*\}\}")
# An alert is a flat object; its extras may nest as deep as the kernel allows (8). Deeper
# documents are refused before any code walks them.
MAX_DEPTH: Final = 16
# The longest ISO 8601 time fromisoformat reads is ~32 characters; more is not a time.
_MAX_TIME_TEXT: Final = 40
_EPOCH_TEXT: Final = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,9})?")
# The kernel names a tick's fields, the mapping its own; the client knows the alert's paths.
_RECORD_TO_MAP: Final = {"timestamp": "time"}
_decoder: Final = msgspec.json.Decoder()


def parse_body(body: bytes) -> dict[str, Any]:
    """The alert's JSON object, or 400. Runs before the passphrase check, on anyone's bytes."""
    try:
        document = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        # `"price": {{close}}` unfilled is not JSON: say why, not where the parser stopped.
        unfilled = _PLACEHOLDER.search(body.decode("utf-8", "replace"))
        if unfilled:
            raise Rejected(400, _unfilled(unfilled.group(1))) from None
        raise Rejected(400, f"malformed JSON: {exc}") from None
    except RecursionError:  # msgspec gives up on deep nesting this way, not with DecodeError
        raise Rejected(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if _deeper_than(document, MAX_DEPTH):
        raise Rejected(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    if not isinstance(document, dict):
        raise Rejected(400, "the alert must be a JSON object")
    placeholder = _first_placeholder(document)
    if placeholder is not None:
        raise Rejected(400, _unfilled(placeholder))
    return document


def _unfilled(name: str) -> str:
    return f"unfilled placeholder {{{{{name}}}}}: TradingView did not replace it with a value"


def _first_placeholder(document: dict[str, Any]) -> str | None:
    """The first ``{{name}}`` left in any key or text, in document order (depth already
    bounded; a stack, not recursion)."""
    stack: list[object] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(reversed([part for pair in item.items() for part in pair]))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, str) and "{{" in item:
            found = _PLACEHOLDER.search(item)
            if found:
                return found.group(1)
    return None


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


class _Fields:
    """The record fields' values found in one alert, and which paths they came from."""

    def __init__(self, alert: dict[str, Any], mapping: FieldMap) -> None:
        self.alert = alert
        self.mapping = mapping
        self.used: dict[str, str] = {}

    def get(self, name: str) -> tuple[str, object | None]:
        """(the path that named it, its value); (the first path, None) when no path is there."""
        paths = self.mapping.paths[name]
        for path in paths:
            value = lookup(self.alert, path)
            if not is_missing(value):
                self.used[name] = path
                return path, value
        return paths[0], None

    def path(self, record_field: str) -> str:
        name = _RECORD_TO_MAP.get(record_field, record_field)
        return self.used.get(name, self.mapping.paths[name][0] if name in self.mapping.paths
                             else record_field)  # fmt: skip


def _text(path: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Rejected(422, f"{path}: required, a non-empty string")
    return value.strip()


def _number(path: str, value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Rejected(422, f"{path}: must be a number, got {type(value).__name__}")
    try:
        # repr, not str, of a float: the shortest text that reads back as the same float.
        return Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise Rejected(422, f"{path}: not a number: {value!r:.40}") from None


def _time(path: str, value: object, received_at: datetime) -> datetime:
    """Epoch numbers by the kernel's one unit rule, ISO 8601 text with an offset; neither
    before 2000 nor more than a day after the alert was received."""
    if not isinstance(value, str):
        when = epoch_datetime(value, path)  # InvalidRecord names the path
    elif _EPOCH_TEXT.fullmatch(text := value.strip()):
        when = epoch_datetime(text, path)  # Pine's str.tostring(time): milliseconds
    else:
        when = _iso_time(path, text)
    if when < OLDEST:
        raise Rejected(422, f"{path}: before {OLDEST.year}: {when.isoformat()}")
    if when > received_at + FUTURE_SLACK:
        raise Rejected(422, f"{path}: more than a day in the future: {when.isoformat()}")
    return when


def _iso_time(path: str, text: str) -> datetime:
    if len(text) > _MAX_TIME_TEXT:
        raise Rejected(422, f"{path}: not an ISO 8601 time ({len(text)} characters)")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(422, f"{path}: not an ISO 8601 time: {text!r}") from None
    if parsed.utcoffset() is None:
        raise Rejected(422, f"{path}: naive (no offset), say Z or +hh:mm: {text!r}")
    # Checked on the local year first: converting year 1 or 9999 to UTC can overflow.
    if not EARLIEST.year <= parsed.year < LATEST.year or not (
        EARLIEST <= parsed.astimezone(UTC) < LATEST
    ):
        raise Rejected(422, f"{path}: out of range [{EARLIEST.year}, {LATEST.year}): {text!r}")
    return parsed.astimezone(UTC)


def _trade_id(path: str, trade_id: object | None, body: bytes) -> str:
    if trade_id is None:
        # The same alert delivered twice gets the same id, so it deduplicates downstream.
        return derived_trade_id(body)
    if isinstance(trade_id, bool) or not isinstance(trade_id, (str, int)):
        raise Rejected(
            422, f"{path}: must be a string or an integer, got {type(trade_id).__name__}"
        )
    return str(trade_id)


def _side(path: str, value: object | None) -> Side | None:
    if value is None:
        return None
    side = value.strip().lower() if isinstance(value, str) else value
    if side == "buy":
        return "buy"
    if side == "sell":
        return "sell"
    raise Rejected(422, f"{path}: must be buy or sell, got {value!r:.40}")


def _instrument(fields: _Fields) -> tuple[str, str]:
    """(exchange, symbol): ``EXCHANGE:SYMBOL`` in the symbol ({{tickerid}}) gives both."""
    symbol_path, symbol_value = fields.get("symbol")
    symbol = _text(symbol_path, symbol_value)
    prefix, colon, rest = symbol.partition(":")
    if colon:
        symbol = _text(symbol_path, rest)
    exchange_path, exchange_value = fields.get("exchange")
    if exchange_value is not None:
        return _text(exchange_path, exchange_value).upper(), symbol.upper()
    if colon and prefix.strip():
        return prefix.strip().upper(), symbol.upper()
    return fields.mapping.default_exchange, symbol.upper()


def alert_to_tick(
    alert: dict[str, Any], body: bytes, received_at: datetime, mapping: FieldMap = DEFAULT_MAP
) -> Tick:
    """The tick of an authenticated alert (passphrase already removed)."""
    fields = _Fields(alert, mapping)
    try:
        exchange, symbol = _instrument(fields)
        price_path, price = fields.get("price")
        if price is None:
            raise Rejected(422, f"{price_path}: required, a number")
        size_path, size = fields.get("size")
        time_path, when = fields.get("time")
        if when is None and "time" in fields.used:
            raise Rejected(422, f"{time_path}: required, ISO 8601 or epoch (or leave it out)")
        side = _side(*fields.get("side"))
        trade_id = _trade_id(*fields.get("trade_id"), body)
        # A passphrase is never published, also where MDP_WEBHOOK_AUTH does not check it.
        extras = without(alert, [*fields.used.values(), "passphrase"])
        return Tick(
            exchange=exchange,
            symbol=symbol,
            timestamp=received_at if when is None else _time(time_path, when, received_at),
            source=SOURCE,
            trade_id=trade_id,
            price=_number(price_path, price),
            size=Decimal(0) if size is None else _number(size_path, size),
            side=side,
            received_at=received_at,
            extras=extras or None,
        )
    except InvalidRecord as exc:
        raise Rejected(422, f"{fields.path(exc.field)}: {exc.problem}") from None

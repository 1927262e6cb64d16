"""Dump rows to records: every field of every row of each fixture archive (rows from Binance's
documentation; spot without header, futures with; ms and µs) against the file's own text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from marketdata.errors import InvalidRecord
from marketdata.records import Bar, Side, Tick
from producers.backfill import Page
from producers.binance import normalise
from producers.binance.dumps import normalise_row
from producers.binance.imports import _State, read_pages
from producers.binance.vision import DumpName, Overrides, parse_name
from tests.unit.producers.binance.vision_files import (
    CM_BOOK,
    CM_KLINES,
    CM_TRADES,
    SPOT_AGG,
    SPOT_KLINES,
    SPOT_TRADES,
    UM_AGG,
    UM_BOOK,
    UM_KLINES,
    UM_TRADES,
    US_AGG,
    US_KLINES,
    US_TRADES,
    csv_rows,
    plain_copy,
)

RECEIVED = datetime(2026, 12, 1, tzinfo=UTC)
_EXCHANGE = {"spot": "BINANCE", "um": "BINANCE-UM", "cm": "BINANCE-CM"}


def _time(text: str) -> datetime:
    # Independent of the kernel's rule: 13 digits are milliseconds, 16 microseconds.
    assert len(text) in {13, 16}, text
    per_us = 1000 if len(text) == 13 else 1
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(text) * per_us)


def _maker(text: str) -> bool:
    assert text in {"True", "true", "False", "false"}
    return text.lower() == "true"


def _records(path: Path) -> list[Any]:
    pages = list(read_pages(path, parse_name(path), _State(), received_at=RECEIVED))
    assert all(not page.rejected for page in pages), [p.rejected for p in pages]
    return [record for page in pages for record in page.records]


def _expected_bar(market: str, symbol: str, interval: str, row: list[str]) -> Bar:
    return Bar(exchange=_EXCHANGE[market], symbol=symbol, interval=interval,
               timestamp=_time(row[0]), open=Decimal(row[1]), high=Decimal(row[2]),
               low=Decimal(row[3]), close=Decimal(row[4]), volume=Decimal(row[5]),
               trade_count=int(row[8]), closed=True, source="binance.kline")  # fmt: skip


def _expected_trade(market: str, symbol: str, row: list[str]) -> Tick:
    maker = _maker(row[5])
    return Tick(exchange=_EXCHANGE[market], symbol=symbol, timestamp=_time(row[4]),
                source="binance.trade", trade_id=row[0], price=Decimal(row[1]),
                size=Decimal(row[2]), side="sell" if maker else "buy", received_at=RECEIVED,
                extras={"buyer_maker": maker})  # fmt: skip


def _expected_agg(market: str, symbol: str, row: list[str]) -> Tick:
    maker = _maker(row[6])
    return Tick(exchange=_EXCHANGE[market], symbol=symbol, timestamp=_time(row[5]),
                source="binance.aggTrade", trade_id=row[0], price=Decimal(row[1]),
                size=Decimal(row[2]), side="sell" if maker else "buy", received_at=RECEIVED,
                extras={"buyer_maker": maker, "first_trade_id": int(row[3]),
                        "last_trade_id": int(row[4])})  # fmt: skip


def _expected_quotes(market: str, symbol: str, row: list[str]) -> list[Tick]:
    sides: list[tuple[Side, str, str]] = [("bid", row[1], row[2]), ("ask", row[3], row[4])]
    return [Tick(exchange=_EXCHANGE[market], symbol=symbol, timestamp=_time(row[5]),
                 source="binance.bookTicker", trade_id=f"{row[0]}:{side}", price=Decimal(price),
                 size=Decimal(size), side=side, received_at=RECEIVED)
            for side, price, size in sides]  # fmt: skip


@pytest.mark.parametrize(
    ("archive", "market", "symbol", "interval"),
    [(SPOT_KLINES, "spot", "BTCUSDT", "1m"), (US_KLINES, "spot", "BTCUSDT", "1m"),
     (UM_KLINES, "um", "BTCUSDT", "1w"), (CM_KLINES, "cm", "BTCUSD_PERP", "1m")],
)  # fmt: skip
def test_every_kline_row_is_the_bar_the_file_says(
    archive: Path, market: str, symbol: str, interval: str
) -> None:
    expected = [_expected_bar(market, symbol, interval, row) for row in csv_rows(archive)]
    assert expected
    assert _records(archive) == expected


@pytest.mark.parametrize(
    ("archive", "market", "symbol"),
    [(SPOT_TRADES, "spot", "BTCUSDT"), (US_TRADES, "spot", "BTCUSDT"),
     (UM_TRADES, "um", "BTCUSDT"), (CM_TRADES, "cm", "BTCUSD_PERP")],
)  # fmt: skip
def test_every_trade_row_is_the_tick_the_file_says(archive: Path, market: str, symbol: str) -> None:
    expected = [_expected_trade(market, symbol, row) for row in csv_rows(archive)]
    assert expected
    assert _records(archive) == expected


@pytest.mark.parametrize(
    ("archive", "market"), [(SPOT_AGG, "spot"), (US_AGG, "spot"), (UM_AGG, "um")]
)
def test_every_agg_trade_row_is_the_tick_the_file_says(archive: Path, market: str) -> None:
    expected = [_expected_agg(market, "BTCUSDT", row) for row in csv_rows(archive)]
    assert expected
    assert _records(archive) == expected


@pytest.mark.parametrize(
    ("archive", "market", "symbol"),
    [(UM_BOOK, "um", "BNBUSDT"), (CM_BOOK, "cm", "BTCUSD_200626")],
)
def test_every_book_ticker_row_is_two_quotes_keyed_as_live(
    archive: Path, market: str, symbol: str
) -> None:
    expected = [q for row in csv_rows(archive) for q in _expected_quotes(market, symbol, row)]
    assert expected
    assert _records(archive) == expected


def test_microsecond_times_are_kept_to_the_microsecond() -> None:
    trades = _records(US_TRADES)
    assert [t.timestamp.microsecond for t in trades] == [583123, 590456]


def test_a_plain_csv_gives_the_records_of_its_archive(tmp_path: Path) -> None:
    for archive in (SPOT_KLINES, UM_BOOK, US_TRADES):
        assert _records(plain_copy(archive, tmp_path)) == _records(archive)


def test_dump_rest_and_live_copies_of_one_trade_are_one_record() -> None:
    """The README's historicalTrades sample is trade 28457; the dump, REST and the stream give
    it one key."""
    [dumped] = [t for t in _records(SPOT_TRADES) if t.trade_id == "28457"]
    rest = normalise.rest_trade("BTCUSDT", {"id": 28457, "price": "4.00000100",
                                            "qty": "12.00000000", "time": 1499865549590,
                                            "isBuyerMaker": True}, RECEIVED)  # fmt: skip
    live = normalise.trade({"e": "trade", "E": 1499865549591, "s": "BTCUSDT", "t": 28457,
                            "p": "4.00000100", "q": "12.00000000", "T": 1499865549590,
                            "m": True, "M": True}, RECEIVED)  # fmt: skip
    assert dumped.key == rest.key == live.key
    [agg] = [t for t in _records(SPOT_AGG) if t.trade_id == "26129"]
    row = {"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781,
           "T": 1498793709153, "m": True}  # fmt: skip
    rest_agg = normalise.rest_agg_trade("BTCUSDT", row, RECEIVED)
    assert agg.key == rest_agg.key


def _ids(records: Sequence[Tick | Bar]) -> list[str]:
    return [r.trade_id for r in records if isinstance(r, Tick)]


_NAME = DumpName("spot", "trades", "BTCUSDT", None, "2024-03")
_ROW = "51175358,17.80180000,5.69000000,101.29224200,1583709433583,True,True"


def _pages_of(tmp_path: Path, lines: list[str], name: str = "BTCUSDT-trades-2024-03.csv",
              overrides: Overrides | None = None) -> list[Page]:  # fmt: skip
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return list(read_pages(path, parse_name(path, overrides or Overrides()), _State(),
                           received_at=RECEIVED))  # fmt: skip


def test_a_file_is_held_to_the_unit_of_its_first_row(tmp_path: Path) -> None:
    micro = _ROW.replace("1583709433583", "1583709433583001")
    [page] = _pages_of(tmp_path, [_ROW, micro, _ROW.replace("51175358", "51175359")])
    assert _ids(page.records) == ["51175358", "51175359"]
    assert page.rejected == [(micro.encode(), "BTCUSDT-trades-2024-03.csv:2: timestamp: "
                              "1583709433583001 is in microseconds, but this file's times are "
                              "in milliseconds")]  # fmt: skip
    [page] = _pages_of(tmp_path, [micro, _ROW])
    assert [r for _, r in page.rejected] == [
        "BTCUSDT-trades-2024-03.csv:2: timestamp: 1583709433583 is in milliseconds, but this "
        "file's times are in microseconds"]  # fmt: skip


def test_a_kline_closing_in_another_unit_than_it_opens_is_refused(tmp_path: Path) -> None:
    row = csv_rows(SPOT_KLINES)[0]
    row[6] += "999"
    [page] = _pages_of(tmp_path, [",".join(row)], "BTCUSDT-1m-2024-03.csv")
    assert [reason for _, reason in page.rejected] == [
        "BTCUSDT-1m-2024-03.csv:1: close_time: 1601510399999999 is in microseconds, but this "
        "file's times are in milliseconds"]  # fmt: skip


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("1,2,3", "row: 3 fields; a trades row has 6 or 7"),
        (_ROW.replace("17.80180000", "abc"), "price: not a number: 'abc'"),
        (_ROW.replace("True,True", "yes,True"), "side: must be true or false, got 'yes'"),
        (_ROW.replace("51175358", "-5"), "trade_id: must be a Binance id (0 … 2**63-1), got '-5'"),
        (_ROW.replace("5.69000000", "-1"), "size: "),
        (_ROW.replace("1583709433583", "158370943358x"), "timestamp: must be an epoch time in "
                                                         "digits, got '158370943358x'"),
        (_ROW.replace("1583709433583", "9" * 30), "timestamp: must be an epoch time in digits"),
        (_ROW.replace("17.80180000", "1" * 3000), "price: too long for a decimal"),
    ],
)  # fmt: skip
def test_a_row_that_does_not_normalise_is_rejected_with_file_and_line(
    tmp_path: Path, row: str, reason: str
) -> None:
    [page] = _pages_of(tmp_path, [_ROW.replace("51175358", "1"), row])
    assert len(page.records) == 1
    [(raw, why)] = page.rejected
    assert raw == row.encode()
    assert why.startswith(f"BTCUSDT-trades-2024-03.csv:2: {reason}")


def test_a_row_normalises_through_one_function_for_every_kind() -> None:
    [tick] = normalise_row(_NAME, _ROW.split(","), "ms", RECEIVED)
    assert isinstance(tick, Tick)
    assert tick.trade_id == "51175358"
    with pytest.raises(InvalidRecord, match=r"^row: 1 fields; a trades row has 6 or 7$"):
        normalise_row(_NAME, [""], "ms", RECEIVED)


def test_pages_hold_at_most_page_rows(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-trades-2024-03.csv"
    path.write_text("".join(_ROW.replace("51175358", str(n)) + "\n" for n in range(1, 12)))
    pages = list(read_pages(path, _NAME, _State(), page_rows=5, received_at=RECEIVED))
    assert [len(p.records) for p in pages] == [5, 5, 1]
    assert _ids([t for p in pages for t in p.records]) == [str(n) for n in range(1, 12)]


def test_a_line_too_long_is_rejected_with_its_beginning(tmp_path: Path) -> None:
    long = _ROW.replace("17.80180000", "1" * 5000)
    [page] = _pages_of(tmp_path, [long, _ROW])
    assert _ids(page.records) == ["51175358"]
    assert page.rejected == [(long[:4096].encode(), "BTCUSDT-trades-2024-03.csv:1: row: a line "
                              "of over 4096 characters (its beginning kept)")]  # fmt: skip

"""A copy of Binance's public data dumps (data.binance.vision) on loopback: archives and their
``.CHECKSUM`` files in the site's layout, generated on demand from deterministic series.

Paths are the site's: ``/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-09.zip``,
``/data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-09-21.zip``,
``/data/futures/um/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2024-09-21.zip``,
``/data/futures/cm/…``;
each zip holds one CSV named like the archive, and ``<archive>.CHECKSUM`` is ``sha256sum``'s line
(``<hex>  <archive name>``). The CSVs have the dumps' columns: spot without a header row and
booleans ``True``/``False``, futures with a header and ``true``/``false``; spot times are
milliseconds before 2025-01-01 and microseconds from then on, as Binance switched. A monthly
archive is its days' rows end to end, and klines are :func:`sandbox.binance.kline_row`'s, so the
dump, the REST fake and a test agree on every row (:func:`day_rows`, :func:`archive_bytes`).

Faults on demand: ``missing`` (names or paths answered 404: a day not published yet, a symbol not
listed then), ``published_until`` (later days and months not over by then are 404), ``delay_s``
(every response waits), and :meth:`FakeVision.inject` for the next answers of one file:
``"missing"``, ``"truncated"`` (half the zip, served as if whole), ``"bad_checksum"``,
``"garbled"`` (a checksum file of binary garbage), ``"dropped"`` (the connection closed
mid-body), ``"slow"`` (``slow_s`` before answering) or ``"unavailable"`` (503).

Standalone, as the sandbox's dump site: ``python -m sandbox.vision --port 18091``.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import hashlib
import io
import random
import re
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Final, Literal

from aiohttp import web

from sandbox.binance import INTERVAL_MS, kline_row
from sandbox.web import serve

Market = Literal["spot", "um", "cm"]
Fault = Literal["missing", "truncated", "bad_checksum", "garbled", "dropped", "slow", "unavailable"]
KINDS: Final = ("klines", "trades", "aggTrades", "bookTicker")
# Binance's spot dumps carry microseconds from this day on; futures stay in milliseconds.
MICROSECONDS_FROM: Final = date(2025, 1, 1)
DAY_MS: Final = 86_400_000
HEADERS: Final = {
    "klines": "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore",
    "trades": "id,price,qty,quote_qty,time,is_buyer_maker",
    "aggTrades": "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,"
    "is_buyer_maker",
    "bookTicker": "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,"
    "transaction_time,event_time",
}
_CM_TRADES_HEADER: Final = "id,price,qty,base_qty,time,is_buyer_maker"
_NAME = re.compile(r"^(?P<stem>.+)-(?P<date>\d{4}-\d{2}(?:-\d{2})?)\.zip(?P<checksum>\.CHECKSUM)?$")


@dataclass(frozen=True)
class DumpFile:
    """One archive: ``first`` is its day, or the first of its month when ``monthly``."""

    market: Market
    kind: str
    symbol: str
    first: date
    monthly: bool
    interval: str | None = None

    @property
    def name(self) -> str:
        stamp = f"{self.first:%Y-%m}" if self.monthly else f"{self.first:%Y-%m-%d}"
        return f"{self.symbol}-{self.interval or self.kind}-{stamp}.zip"

    @property
    def path(self) -> str:
        market = "spot" if self.market == "spot" else f"futures/{self.market}"
        period = "monthly" if self.monthly else "daily"
        folder = f"{self.symbol}/{self.interval}" if self.interval else self.symbol
        return f"/data/{market}/{period}/{self.kind}/{folder}/{self.name}"

    @property
    def days(self) -> list[date]:
        if not self.monthly:
            return [self.first]
        count = calendar.monthrange(self.first.year, self.first.month)[1]
        return [self.first + timedelta(days=n) for n in range(count)]


def parse_path(path: str) -> tuple[DumpFile, bool] | None:
    """The archive a request path names and whether it asks for its checksum, or None."""
    try:
        return _parse(path.strip("/").split("/"))
    except (ValueError, IndexError):
        return None


def _parse(parts: list[str]) -> tuple[DumpFile, bool]:
    if parts[0] != "data":
        raise ValueError("not under /data")
    market: Market
    if parts[1] == "spot":
        market, rest = "spot", parts[2:]
    elif parts[1] == "futures" and parts[2] in ("um", "cm"):
        market, rest = ("um" if parts[2] == "um" else "cm"), parts[3:]
    else:
        raise ValueError("no such market")
    klines = rest[1] == "klines"
    interval = rest[3] if klines else None
    match = _NAME.fullmatch(rest[-1])
    if (len(rest) != (5 if klines else 4) or rest[0] not in ("daily", "monthly")
            or rest[1] not in KINDS or match is None
            or (interval is not None and interval not in INTERVAL_MS)):  # fmt: skip
        raise ValueError("not an archive of the layout")
    monthly = rest[0] == "monthly"
    stamp = match["date"]
    archive = DumpFile(
        market, rest[1], rest[2], date.fromisoformat(f"{stamp}-01" if monthly else stamp),
        monthly, interval,
    )  # fmt: skip
    if archive.name != rest[-1].removesuffix(".CHECKSUM"):
        raise ValueError("the name does not match its folder")
    return archive, match["checksum"] is not None


def _day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


def _flag(value: bool, market: Market) -> str:
    text = str(value)
    return text if market == "spot" else text.lower()


def day_rows(
    market: Market, kind: str, symbol: str, day: date, interval: str | None = None,
    *, per_day: int = 100,
) -> list[list[str]]:  # fmt: skip
    """The CSV rows of one day, as the dump writes them (no header)."""
    micro = market == "spot" and day >= MICROSECONDS_FROM
    scale = 1000 if micro else 1
    start = _day_start_ms(day)
    if kind == "klines":
        if interval is None:
            raise ValueError("klines need an interval")
        rows = []
        for open_ms in range(start, start + DAY_MS, INTERVAL_MS[interval]):
            row = [str(value) for value in kline_row(symbol, interval, open_ms)]
            row[0] = str(open_ms * scale)
            row[6] = str(int(row[6]) * scale + scale - 1)
            rows.append(row)
        return rows
    rng = random.Random(f"{market}/{kind}/{symbol}/{day}")
    spacing = DAY_MS // per_day
    first_id = (day - date(2017, 1, 1)).days * per_day + 1
    rows = []
    for n in range(per_day):
        at = (start + n * spacing + rng.randrange(spacing)) * scale + rng.randrange(scale)
        price = Decimal(1000 + rng.randint(0, 99_999)) / 100
        qty = (
            Decimal(rng.randint(1, 100_000)) / 10_000
            if market != "cm"
            else Decimal(rng.randint(1, 50))
        )
        maker = rng.random() < 0.5
        ident = first_id + n
        if kind == "trades":
            second = qty * 100 / price if market == "cm" else qty * price
            row = [
                str(ident),
                f"{price:.8f}",
                f"{qty:.8f}",
                f"{second:.8f}",
                str(at),
                _flag(maker, market),
            ]
        elif kind == "aggTrades":
            trade = ident * 3
            row = [str(ident), f"{price:.8f}", f"{qty:.8f}", str(trade),
                   str(trade + rng.randint(0, 2)), str(at), _flag(maker, market)]  # fmt: skip
        elif kind == "bookTicker":
            ask = price + Decimal(rng.randint(1, 20)) / 100
            row = [str(ident), f"{price:.8f}", f"{qty:.8f}", f"{ask:.8f}", f"{qty * 2:.8f}",
                   str(at), str(at + rng.randint(0, 5))]  # fmt: skip
        else:
            raise ValueError(f"unknown kind {kind!r}")
        if market == "spot":
            row.append("True")  # isBestMatch, a spot column only
        rows.append(row)
    return rows


def archive_rows(archive: DumpFile, *, per_day: int = 100) -> list[list[str]]:
    """Every row of the archive's CSV, header excluded."""
    return [
        row
        for day in archive.days
        for row in day_rows(
            archive.market, archive.kind, archive.symbol, day, archive.interval, per_day=per_day
        )
    ]


def header(archive: DumpFile) -> str | None:
    """The CSV's header row: futures archives have one, spot archives none."""
    if archive.market == "spot":
        return None
    if archive.kind == "trades" and archive.market == "cm":
        return _CM_TRADES_HEADER
    return HEADERS[archive.kind]


@lru_cache(maxsize=64)
def archive_bytes(archive: DumpFile, *, per_day: int = 100) -> bytes:
    """The zip, the same bytes every time (fixed member time), so its checksum is stable."""
    lines = [",".join(row) for row in archive_rows(archive, per_day=per_day)]
    top = header(archive)
    text = "\n".join([top, *lines] if top else lines) + "\n"
    buffer = io.BytesIO()
    member = zipfile.ZipInfo(archive.name.removesuffix(".zip") + ".csv", (1980, 1, 1, 0, 0, 0))
    member.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(member, text)
    return buffer.getvalue()


def checksum_line(name: str, content: bytes) -> str:
    """``sha256sum``'s output for ``content`` saved as ``name``, as the site serves it."""
    return f"{hashlib.sha256(content).hexdigest()}  {name}\n"


@dataclass
class FakeVision:
    """Start with :meth:`start`; ``url`` is the base URL (``BINANCE_VISION_URL``)."""

    per_day: int = 100  # trades, aggregate trades and book tickers a day
    missing: set[str] = field(default_factory=set)  # archive names or paths answered 404
    published_until: date | None = None  # None: everything up to today is published
    delay_s: float = 0.0  # every response waits this long
    slow_s: float = 5.0  # what an injected "slow" waits
    requests: list[str] = field(default_factory=list)  # every path asked, in order
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    host: str = "127.0.0.1"
    _faults: dict[str, list[Fault]] = field(default_factory=lambda: defaultdict(list))
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, name: str, fault: Fault, times: int = 1) -> None:
        """The next ``times`` answers for the file ``name`` (an archive's or its checksum's)."""
        self._faults[name].extend([fault] * times)

    def fetched(self, suffix: str = ".zip") -> list[str]:
        """The paths asked for that end with ``suffix``."""
        return [path for path in self.requests if path.endswith(suffix)]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        self._runner, self.port = await serve(app, self.host, self.port)

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _published(self, archive: DumpFile) -> bool:
        until = self.published_until or datetime.now(UTC).date() - timedelta(days=1)
        return archive.days[-1] <= until and archive.name not in self.missing

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        parsed = parse_path(request.path)
        name = request.path.rsplit("/", 1)[-1]
        queue = self._faults.get(name)
        fault = queue.pop(0) if queue else None
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if (parsed is None or fault == "missing" or request.path in self.missing
                or not self._published(parsed[0])
                or (parsed[0].kind == "bookTicker" and parsed[0].market == "spot")):  # fmt: skip
            return web.Response(status=404, text="<Error><Code>NoSuchKey</Code></Error>")
        if fault == "unavailable":
            return web.Response(status=503, text="<Error><Code>SlowDown</Code></Error>")
        archive, wants_checksum = parsed
        content = archive_bytes(archive, per_day=self.per_day)
        if wants_checksum and fault == "garbled":
            return web.Response(body=b"\xff\xfe\x00garbage\x80" * 8)
        if wants_checksum:
            if fault == "bad_checksum":
                content = content + b"tampered"
            return web.Response(text=checksum_line(archive.name, content))
        if fault == "truncated":
            content = content[: len(content) // 2]
        if fault != "dropped":
            return web.Response(body=content, content_type="application/zip")
        response = web.StreamResponse(headers={"Content-Type": "application/zip"})
        response.content_length = len(content)
        await response.prepare(request)
        await response.write(content[: len(content) // 2])
        if request.transport is not None:
            request.transport.close()
        return response


async def _main(host: str, port: int, per_day: int) -> None:
    fake = FakeVision(per_day=per_day, port=port, host=host)
    await fake.start()
    print(f"fake data.binance.vision on http://{host}:{fake.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake data.binance.vision (the public dumps).")
    parser.add_argument("--host", default="127.0.0.1", help="listen on HOST (default %(default)s)")
    parser.add_argument("--port", type=int, default=18091, help="listen on HOST:PORT")
    parser.add_argument("--per-day", type=int, default=1000,
                        help="trades, aggregate trades and book tickers a day")  # fmt: skip
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.host, args.port, args.per_day))


if __name__ == "__main__":
    main()

"""`mdp produce …` and `mdp backfill …`: one command per venue, live and history."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from marketdata.errors import MarketDataError
from marketdata.settings import Settings
from mdp.cli_common import DATE, fail, progress_bar, utc

if TYPE_CHECKING:
    from producers.backfill import BackfillResult, Progress
    from producers.binance.trades import Kind


@click.group()
def produce() -> None:
    """Stream live ticks and bars from a venue into md.ticks.raw / md.bars.raw."""


@produce.command("binance")
@click.option("--symbols", required=True, help="Comma-separated, e.g. BTCUSDT,ETHUSDT.")
@click.option(
    "--streams", default="trade,kline_1m,bookTicker", show_default=True,
    help="Comma-separated stream kinds: trade, aggTrade, kline_<interval>, bookTicker.",
)  # fmt: skip
@click.option("--watchdog", default=30.0, show_default=True,
              help="Seconds without a frame before the connection is replaced.")  # fmt: skip
@click.pass_obj
def produce_binance(settings: Settings, *, symbols: str, streams: str, watchdog: float) -> None:
    """Binance spot streams (BINANCE_STREAM_URL; sandbox: the local fake).

    Times come in BINANCE_TIME_UNIT (microsecond by default, or millisecond), asked of the
    streams and of the REST gap fill alike, and are stored exactly.
    """
    from producers.binance.run import run_live  # noqa: PLC0415

    names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    kinds = [k.strip() for k in streams.split(",") if k.strip()]
    asyncio.run(run_live(settings, names, kinds, watchdog_s=watchdog))


_SPECS_HELP = (
    "Comma-separated TYPE:SYMBOL:EXCHANGE:CURRENCY[:EXPIRY], e.g. STK:AAPL:SMART:USD,"
    "FUT:ES:CME:USD:202412,CASH:EUR:IDEALPRO:USD,CRYPTO:BTC:PAXOS:USD."
)


@produce.command("ibkr")
@click.option("--symbols", required=True, help=_SPECS_HELP)
@click.option(
    "--ticks",
    type=click.Choice(["AllLast", "Last", "none"]),
    default="AllLast",
    show_default=True,
    help="Tick-by-tick trades: all prints, or exchange trades only.",
)
@click.option("--quotes", is_flag=True, help="Also tick-by-tick best bid/ask.")
@click.option(
    "--bars/--no-bars",
    default=True,
    show_default=True,
    help="5-second real-time bars (TRADES; MIDPOINT for forex).",
)
@click.option("--watchdog", default=60.0, show_default=True,
              help="Seconds without data before TWS is probed, and the session replaced if "
              "it does not answer.")  # fmt: skip
@click.pass_obj
def produce_ibkr(
    settings: Settings, *, symbols: str, ticks: str, quotes: bool, bars: bool, watchdog: float
) -> None:
    """Interactive Brokers through TWS / IB Gateway (IBKR_HOST, IBKR_PORT, IBKR_CLIENT_ID).

    Trades keep the exchange's timestamp; reconnects renew every subscription and fetch the
    5-second bars missed meanwhile. Sandbox mode: the local fake TWS on port 17497.
    """
    from producers.ibkr.contracts import parse_specs  # noqa: PLC0415
    from producers.ibkr.live import LiveOptions  # noqa: PLC0415
    from producers.ibkr.run import run_live  # noqa: PLC0415

    options = LiveOptions(ticks=None if ticks == "none" else ticks, quotes=quotes, bars=bars,
                          watchdog_s=watchdog)  # fmt: skip
    asyncio.run(run_live(settings, parse_specs(symbols), options))


@produce.command("dtc")
@click.option(
    "--symbols", required=True, help="Comma-separated SYMBOL or SYMBOL@EXCHANGE: ESZ4@CME,NQZ4@CME."
)
@click.option("--timeout", type=float, default=None,
              help="Seconds without a message before the connection is replaced "
                   "[default: 2.5 x DTC_HEARTBEAT_S].")  # fmt: skip
@click.pass_obj
def produce_dtc(settings: Settings, *, symbols: str, timeout: float | None) -> None:
    """Sierra Chart trades and best bid/ask over DTC (DTC_HOST, DTC_PORT; sandbox: the fake)."""
    from producers.dtc.normalise import Instrument  # noqa: PLC0415
    from producers.dtc.run import run_live  # noqa: PLC0415

    instruments = [Instrument.parse(s) for s in symbols.split(",") if s.strip()]
    asyncio.run(run_live(settings, instruments, timeout_s=timeout))


@click.group()
def backfill() -> None:
    """Fetch historical bars (or trades) from a venue into md.bars.raw (md.ticks.raw)."""


@backfill.command("binance")
@click.option("--symbol", required=True, help="Binance symbol, e.g. BTCUSDT.")
@click.option("--interval", help="Kline interval: 1s 1m 3m 5m 15m 30m 1h … 1M.")
@click.option(
    "--trades",
    is_flag=True,
    help="Every trade (historicalTrades) instead of klines, into md.ticks.raw.",
)
@click.option(
    "--agg-trades",
    is_flag=True,
    help="Aggregate trades (aggTrades) instead of klines, into md.ticks.raw.",
)
@click.option("--start", required=True, type=DATE, callback=utc, help="First bar or trade (UTC).")
@click.option("--end", type=DATE, callback=utc, help="Last bar or trade (UTC); default: now.")
@click.option(
    "--resume",
    is_flag=True,
    help="Start from the newest bar (or trade of that kind) already stored.",
)
@click.pass_obj
def backfill_binance(
    settings: Settings, *, symbol: str, interval: str | None, trades: bool, agg_trades: bool,
    start: datetime, end: datetime | None, resume: bool,
) -> None:  # fmt: skip
    """Page through Binance REST klines (1000 a request), or trades with --trades or
    --agg-trades (an hour window, then by id), within Binance's rate limits.

    Trades have the live streams' sources and ids (binance.trade, binance.aggTrade), so copies
    already stored are stored once. Times come in BINANCE_TIME_UNIT (microsecond by default).
    """
    from producers.binance.backfill import backfill as run  # noqa: PLC0415
    from producers.binance.backfill import backfill_trades  # noqa: PLC0415

    if end is not None and start > end:
        fail(MarketDataError(f"--start {start:%Y-%m-%d %H:%M:%S} is after --end "
                             f"{end:%Y-%m-%d %H:%M:%S}"))  # fmt: skip
    if trades and agg_trades:
        fail(MarketDataError("give one of --trades and --agg-trades, not both"))
    if trades or agg_trades:
        flag = "--trades" if trades else "--agg-trades"
        if interval is not None:
            fail(MarketDataError(f"{flag} takes no --interval: trades are ticks, not bars"))
        kind: Kind = "trades" if trades else "aggTrades"
        _backfill(settings, f"{symbol} {kind}", lambda progress: backfill_trades(
            settings, symbol, kind, start, end, resume=resume, progress=progress))  # fmt: skip
        return
    if interval is None:
        fail(MarketDataError("give --interval for klines, or --trades or --agg-trades"))
    _backfill(settings, f"{symbol} {interval}", lambda progress: run(
        settings, symbol, interval, start, end, resume=resume, progress=progress))  # fmt: skip


@backfill.command("ibkr")
@click.option("--symbol", required=True, help="One instrument: " + _SPECS_HELP)
@click.option(
    "--bar-size",
    required=True,
    help="1s 5s 10s 15s 30s 1m 2m 3m 5m 10m 15m 20m 30m 1h 2h 3h 4h 8h 1d 1w 1M.",
)
@click.option("--start", required=True, type=DATE, callback=utc, help="First bar (UTC).")
@click.option("--end", type=DATE, callback=utc, help="End of the range, exclusive (UTC); "
              "default: now.")  # fmt: skip
@click.option("--resume", is_flag=True, help="Continue below the oldest bar already stored.")
@click.option("--rth", is_flag=True, help="Regular trading hours only.")
@click.option("--client-id", type=int, help="TWS client id; default IBKR_CLIENT_ID + 1, so "
              "that a backfill runs beside the live producer.")  # fmt: skip
@click.pass_obj
def backfill_ibkr(
    settings: Settings, *, symbol: str, bar_size: str, start: datetime, end: datetime | None,
    resume: bool, rth: bool, client_id: int | None,
) -> None:  # fmt: skip
    """Page backwards through reqHistoricalData within IB's pacing rules (never error 162)."""
    from producers.ibkr.backfill import backfill as run  # noqa: PLC0415
    from producers.ibkr.contracts import parse_spec  # noqa: PLC0415

    _backfill(settings, f"{symbol} {bar_size}", lambda progress: run(
        settings, parse_spec(symbol), bar_size, start, end, resume=resume, client_id=client_id,
        use_rth=rth, progress=progress,
    ))  # fmt: skip


@backfill.command("dtc")
@click.option("--symbol", required=True, help="SYMBOL or SYMBOL@EXCHANGE, e.g. ESZ4@CME.")
@click.option(
    "--interval",
    required=True,
    help="tick, or bars: 1s 2s 4s 5s 10s 30s 1m 5m 10m 15m 30m 1h 2h 1d 1w.",
)
@click.option("--start", required=True, type=DATE, callback=utc, help="First record (UTC).")
@click.option("--end", type=DATE, callback=utc, help="Last record (UTC); default: now.")
@click.option("--resume", is_flag=True, help="Start from the newest record already stored.")
@click.option("--no-compression", is_flag=True, help="Do not ask for zlib-compressed data.")
@click.pass_obj
def backfill_dtc(
    settings: Settings, *, symbol: str, interval: str, start: datetime, end: datetime | None,
    resume: bool, no_compression: bool,
) -> None:  # fmt: skip
    """Historical bars or trades from the DTC server's historical port (DTC_HISTORICAL_PORT)."""
    from producers.dtc.backfill import backfill as run  # noqa: PLC0415
    from producers.dtc.normalise import INTERVALS, Instrument  # noqa: PLC0415

    if interval not in INTERVALS:
        fail(MarketDataError(f"unknown DTC interval {interval!r}; one of {', '.join(INTERVALS)}"))
    _backfill(settings, f"{symbol} {interval}", lambda progress: run(
        settings, Instrument.parse(symbol), interval, start, end, resume=resume,
        progress=progress, compress=not no_compression,
    ))  # fmt: skip


def _backfill(
    settings: Settings, label: str, run: Callable[[Progress], Coroutine[Any, Any, BackfillResult]]
) -> None:
    """Every venue's backfill alike: a progress bar on stderr, then one summary line."""
    with progress_bar(label) as progress:
        result = asyncio.run(run(progress))
    click.echo(result.summary(settings.topics))

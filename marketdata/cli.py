"""The `mdp` command: one subcommand per role of the pipeline, plus local services."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NoReturn

import click

from marketdata import __version__
from marketdata.errors import MarketDataError
from marketdata.kafka import ensure_topics
from marketdata.logs import configure_logging
from marketdata.pipeline import ROLES
from marketdata.services.manager import ServiceManager
from marketdata.settings import Settings
from sinks.service import run_sink


def _fail(error: MarketDataError) -> NoReturn:
    click.echo(f"mdp: error: {error}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mdp")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Market-data pipeline: exchange ticks and OHLCV bars into Kafka, then TimescaleDB.

    \b
    Roles, each its own process (scale out by running more of them):
      produce   read a venue (Binance, Interactive Brokers, Sierra Chart DTC) into Kafka
      process   faust worker: deduplicate and batch the raw topics
      sink      write batches to TimescaleDB, committing offsets after the database
      webhook   take signed TradingView alerts over HTTP
    Operations:
      run       the whole pipeline here, every role a process, with a live status
      status    rows and newest timestamp per series in the database
      dlq       show and replay the dead letters
      services  start/stop/inspect local Kafka and PostgreSQL
      topics    create the pipeline's Kafka topics
      migrate   create or upgrade the database tables
      config    show the effective configuration (secrets masked)

    Configuration comes from environment variables only; see `mdp config` and the README.
    """
    try:
        settings = Settings.from_env()
    except MarketDataError as exc:
        _fail(exc)
    configure_logging(settings.log_level)
    ctx.obj = settings


@cli.group()
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
    """Binance spot streams (BINANCE_STREAM_URL; sandbox: the local fake)."""
    from producers.binance.run import run_live  # noqa: PLC0415

    names = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    kinds = [k.strip() for k in streams.split(",") if k.strip()]
    try:
        asyncio.run(run_live(settings, names, kinds, watchdog_s=watchdog))
    except MarketDataError as exc:
        _fail(exc)


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
    try:
        asyncio.run(run_live(settings, parse_specs(symbols), options))
    except MarketDataError as exc:
        _fail(exc)


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

    try:
        instruments = [Instrument.parse(s) for s in symbols.split(",") if s.strip()]
        asyncio.run(run_live(settings, instruments, timeout_s=timeout))
    except MarketDataError as exc:
        _fail(exc)


@cli.group()
def backfill() -> None:
    """Fetch historical bars from a venue into md.bars.raw."""


def _utc(_: click.Context, __: click.Parameter, value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


_DATE = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, and the ``progress(done, total)`` callback that moves it."""
    with click.progressbar(length=1, label=label, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        yield progress


@backfill.command("binance")
@click.option("--symbol", required=True, help="Binance symbol, e.g. BTCUSDT.")
@click.option("--interval", required=True, help="Kline interval: 1s 1m 3m 5m 15m 30m 1h … 1M.")
@click.option("--start", required=True, type=_DATE, callback=_utc, help="First bar (UTC).")
@click.option("--end", type=_DATE, callback=_utc, help="Last bar (UTC); default: now.")
@click.option("--resume", is_flag=True, help="Start from the newest bar already stored.")
@click.pass_obj
def backfill_binance(
    settings: Settings, *, symbol: str, interval: str, start: datetime, end: datetime | None,
    resume: bool,
) -> None:  # fmt: skip
    """Page through Binance REST klines (1000 a request) within its rate limits."""
    from producers.binance.backfill import backfill as run  # noqa: PLC0415

    with _progress(f"{symbol} {interval}") as progress:
        try:
            result = asyncio.run(
                run(settings, symbol, interval, start, end, resume=resume, progress=progress)
            )
        except MarketDataError as exc:
            _fail(exc)
    click.echo(
        f"{result.bars} bars of {symbol.upper()} {interval} from {result.started_at:%Y-%m-%d %H:%M}"
        f" published to {settings.topics.bars_raw}"
        + (f"; {result.rejected} malformed rows dead-lettered" if result.rejected else "")
        + (f"; waited {result.waited_s:.0f}s for rate limits" if result.waited_s else "")
    )


@backfill.command("ibkr")
@click.option("--symbol", required=True, help="One instrument: " + _SPECS_HELP)
@click.option(
    "--bar-size",
    required=True,
    help="1s 5s 10s 15s 30s 1m 2m 3m 5m 10m 15m 20m 30m 1h 2h 3h 4h 8h 1d 1w 1M.",
)
@click.option("--start", required=True, type=_DATE, callback=_utc, help="First bar (UTC).")
@click.option("--end", type=_DATE, callback=_utc, help="End of the range, exclusive (UTC); "
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

    with _progress(f"{symbol} {bar_size}") as progress:
        try:
            result = asyncio.run(run(
                settings, parse_spec(symbol), bar_size, start, end, resume=resume,
                client_id=client_id, use_rth=rth, progress=progress,
            ))  # fmt: skip
        except MarketDataError as exc:
            _fail(exc)
    click.echo(
        f"{result.bars} bars of {result.symbol} {bar_size} before {result.end:%Y-%m-%d %H:%M}"
        f" published to {settings.topics.bars_raw} in {result.requests} requests"
        + (f"; {result.rejected} malformed rows dead-lettered" if result.rejected else "")
        + (f"; waited {result.waited_s:.0f}s for IB's pacing" if result.waited_s else "")
    )


@backfill.command("dtc")
@click.option("--symbol", required=True, help="SYMBOL or SYMBOL@EXCHANGE, e.g. ESZ4@CME.")
@click.option(
    "--interval",
    required=True,
    help="tick, or bars: 1s 2s 4s 5s 10s 30s 1m 5m 10m 15m 30m 1h 2h 1d 1w.",
)
@click.option("--start", required=True, type=_DATE, callback=_utc, help="First record (UTC).")
@click.option("--end", type=_DATE, callback=_utc, help="Last record (UTC); default: now.")
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
        _fail(MarketDataError(f"unknown DTC interval {interval!r}; one of {', '.join(INTERVALS)}"))
    with _progress(f"{symbol} {interval}") as advance:

        def progress(covered_s: float, total_s: float) -> None:
            advance(int(covered_s), max(int(total_s), 1))

        try:
            instrument = Instrument.parse(symbol)
            result = asyncio.run(run(settings, instrument, interval, start, end, resume=resume,
                                     progress=progress, compress=not no_compression))  # fmt: skip
        except MarketDataError as exc:
            _fail(exc)
    topic = settings.topics.ticks_raw if interval == "tick" else settings.topics.bars_raw
    click.echo(
        f"{result.records} {'trades' if interval == 'tick' else 'bars'} of {instrument} {interval}"
        f" from {result.started_at:%Y-%m-%d %H:%M:%S} published to {topic}"
        + (f"; {result.rejected} malformed records dead-lettered" if result.rejected else "")
        + (f"; {result.attempts} attempts" if result.attempts > 1 else "")
    )


@cli.command("run")
@click.option(
    "--duration",
    type=float,
    metavar="SECONDS",
    help="Stop by itself after this long, and print the summary.",
)
@click.option(
    "--roles",
    default=",".join(ROLES),
    show_default=True,
    help="Which roles to run (comma-separated).",
)
@click.option("--services/--no-services", default=True, show_default=True,
              help="Start the local Kafka and PostgreSQL first (`mdp services up`); "
              "--no-services uses KAFKA_BOOTSTRAP_SERVERS and MARKET_DATA_DATABASE_URL "
              "as they are.")  # fmt: skip
@click.pass_obj
def run_all(settings: Settings, *, duration: float | None, roles: str, services: bool) -> None:
    """Run the whole pipeline here: services, topics, tables, and every role as a process.

    \b
    Sandbox mode (the default) also starts the fake venues (Binance, TWS, DTC on their sandbox
    ports) replaying market data; official mode runs a producer only for a venue whose
    BINANCE_SYMBOLS / IBKR_SYMBOLS / DTC_SYMBOLS is set. Crashed roles are restarted with
    backoff. Shows one status line per role; logs go to MDP_STATE_DIR/logs. Ctrl-C (or
    --duration) stops the roles in order (producers, processor, sink) and prints what the
    database holds.
    """
    from marketdata.inventory import describe  # noqa: PLC0415
    from marketdata.pipeline import run_pipeline  # noqa: PLC0415

    chosen = [r.strip() for r in roles.split(",") if r.strip()]
    try:
        series = asyncio.run(run_pipeline(settings, chosen, duration_s=duration,
                                          services=services))  # fmt: skip
    except MarketDataError as exc:
        _fail(exc)
    click.echo(describe(series))


@cli.command("status")
@click.pass_obj
def status_of_data(settings: Settings) -> None:
    """Rows and the newest timestamp per exchange, symbol and interval in the database."""
    from marketdata.inventory import describe, stored_series  # noqa: PLC0415

    try:
        click.echo(describe(stored_series(settings)))
    except MarketDataError as exc:
        _fail(exc)


@cli.command()
@click.pass_obj
def process(settings: Settings) -> None:
    """Run a faust worker: deduplicate and batch md.ticks.raw / md.bars.raw.

    \b
    Writes per-instrument batches (MDP_PROCESS_BATCH_RECORDS records at most) to md.ticks and
    md.bars, taking MDP_PROCESS_TAKE_MESSAGES messages or MDP_PROCESS_BATCH_MS at a time. Drops
    ticks already emitted within MDP_DEDUPE_WINDOW_S / MDP_DEDUPE_WINDOW_KEYS, and superseded
    bar versions. Undecodable messages go to md.dlq. Workers with the same MDP_PROCESS_GROUP
    share the partitions. Metrics and /health on MDP_METRICS_HOST:MDP_PROCESS_WEB_PORT.
    """
    # Imported here: faust costs every other role half a second and tens of MB.
    from processors.worker import run_worker  # noqa: PLC0415

    try:
        run_worker(settings)
    except MarketDataError as exc:
        _fail(exc)


@cli.command()
@click.pass_obj
def sink(settings: Settings) -> None:
    """Consume md.ticks and md.bars and upsert them into TimescaleDB.

    \b
    Batches up to MDP_SINK_BATCH_ROWS rows or MDP_SINK_BATCH_MS milliseconds, writes each batch
    in one transaction, and commits Kafka offsets only after the database commit. Undecodable
    messages go to md.dlq with the reason. Metrics and /health on MDP_METRICS_HOST:PORT.
    Stops cleanly on SIGTERM/SIGINT. Run several in one group (MDP_SINK_GROUP) to scale out.
    """
    try:
        asyncio.run(run_sink(settings))
    except MarketDataError as exc:
        _fail(exc)


@cli.group(invoke_without_command=True)
@click.pass_context
def webhook(ctx: click.Context) -> None:
    """Serve the TradingView webhook on MDP_WEBHOOK_HOST:MDP_WEBHOOK_PORT (uvicorn).

    \b
    POST /webhooks/tradingview takes an alert, authenticates it (MDP_WEBHOOK_AUTH: signature,
    passphrase, allowlist), and publishes it as a tick once Kafka has acknowledged it (202).
    GET /health and GET /metrics. `mdp webhook sign` signs a body for relays and tests.
    """
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn  # noqa: PLC0415

    from webhook.app import create_app  # noqa: PLC0415

    settings: Settings = ctx.obj
    try:
        app = create_app(settings)
    except MarketDataError as exc:
        _fail(exc)
    # proxy_headers off: which forwarded header to trust is MDP_WEBHOOK_TRUSTED_PROXY_HEADER's
    # call alone (uvicorn would otherwise believe X-Forwarded-For from any loopback peer).
    uvicorn.run(app, host=settings.webhook_host, port=settings.webhook_port,
                log_level=settings.log_level.lower(), access_log=False,
                proxy_headers=False)  # fmt: skip


@webhook.command("sign")
@click.argument("body", type=click.File("rb"), default="-")
@click.pass_obj
def webhook_sign(settings: Settings, body: click.utils.LazyFile) -> None:
    """Print the X-Signature of BODY (a file, or - for standard input) under
    TRADINGVIEW_HMAC_SECRET."""
    from webhook.auth import sign  # noqa: PLC0415

    if settings.tradingview_hmac_secret is None:
        _fail(MarketDataError("TRADINGVIEW_HMAC_SECRET is not set"))
    click.echo(
        "sha256=" + sign(body.read(), settings.tradingview_hmac_secret.get_secret_value().encode())
    )


@cli.command()
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option(
    "--downgrade", "down_to", metavar="REVISION", help="Downgrade to REVISION ('base': drop all)."
)
@click.pass_obj
def migrate(settings: Settings, revision: str, down_to: str | None) -> None:
    """Create or upgrade the tables in MARKET_DATA_DATABASE_URL (Alembic; idempotent).

    Makes market_data_ticks and market_data_ohlcv hypertables when the timescaledb extension is
    available (chunking, compression and retention from the MDP_* settings), plain tables with
    a warning otherwise.
    """
    # Imported here: Alembic and SQLAlchemy would add 0.3 s and ~30 MB to every other role.
    from marketdata import migrate as migrations  # noqa: PLC0415

    try:
        if down_to:
            migrations.downgrade(settings, down_to)
        else:
            migrations.upgrade(settings, revision)
        click.echo(f"database at revision {migrations.current_revision(settings) or 'base'}")
    except MarketDataError as exc:
        _fail(exc)


@cli.command()
@click.pass_obj
def topics(settings: Settings) -> None:
    """Create the pipeline's topics on KAFKA_BOOTSTRAP_SERVERS (those missing; idempotent).

    Uses MDP_TOPIC_PARTITIONS and MDP_TOPIC_REPLICATION. Run it once before the roles start on a
    cluster of your own; `mdp services up` does it for the local broker.
    """
    try:
        created = asyncio.run(ensure_topics(settings, settings.topics.all()))
    except MarketDataError as exc:
        _fail(exc)
    for name in settings.topics.all():
        click.echo(f"{name:<24} {'created' if name in created else 'exists'}")


@cli.group()
def dlq() -> None:
    """Inspect md.dlq and send its messages back where they came from.

    \b
    Every stage puts what it cannot use in md.dlq, unchanged, with headers saying why
    (mdp.reason), which stage (mdp.stage) and, for Kafka messages, where from (mdp.topic,
    mdp.partition, mdp.offset).
    """


@dlq.command("show")
@click.option("--stage", help="Only dead letters of this stage (e.g. process, sink, ibkr.live).")
@click.pass_obj
def dlq_show(settings: Settings, stage: str | None) -> None:
    """List the dead letters: where, which stage, from where, and why."""
    from marketdata.dlq import HEADER_REASON, HEADER_STAGE, read_dead_letters  # noqa: PLC0415

    try:
        letters = asyncio.run(read_dead_letters(settings))
    except MarketDataError as exc:
        _fail(exc)
    shown = [d for d in letters if stage is None or d.header(HEADER_STAGE) == stage]
    for letter in shown:
        origin = letter.origin_topic or "venue-payload"
        click.echo(f"{letter.partition}:{letter.offset}  {letter.header(HEADER_STAGE):<16}"
                   f" {origin:<20} {letter.header(HEADER_REASON)}")  # fmt: skip
    click.echo(f"{len(shown)} dead letters in {settings.topics.dlq}")


@dlq.command("replay")
@click.option("--stage", help="Only dead letters of this stage.")
@click.option("--dry-run", is_flag=True, help="Say what would be sent, send nothing.")
@click.pass_obj
def dlq_replay(settings: Settings, stage: str | None, dry_run: bool) -> None:
    """Send dead letters back to the topic they came from (after fixing what rejected them).

    Replaying twice is harmless: the processors and the sink deduplicate. A producer's dead
    letters are venue payloads, not Kafka messages: they are listed, and fetched again with
    `mdp backfill`.
    """
    from marketdata.dlq import HEADER_STAGE, read_dead_letters, replay  # noqa: PLC0415
    from marketdata.kafka import create_producer  # noqa: PLC0415

    async def run() -> tuple[int, int]:
        letters = await read_dead_letters(settings)
        chosen = [d for d in letters if stage is None or d.header(HEADER_STAGE) == stage]
        if dry_run:
            return sum(1 for d in chosen if d.origin_topic), sum(1 for d in chosen
                                                                 if not d.origin_topic)  # fmt: skip
        producer = create_producer(settings)
        await producer.start()
        try:
            sent, skipped = await replay(producer, chosen)
        finally:
            await producer.stop()
        return sent, len(skipped)

    try:
        sent, skipped = asyncio.run(run())
    except MarketDataError as exc:
        _fail(exc)
    verb = "would send" if dry_run else "sent"
    left = f"; {skipped} venue payloads left (use mdp backfill)" if skipped else ""
    click.echo(f"{verb} {sent} dead letters back to their topics{left}")


@cli.command()
@click.pass_obj
def config(settings: Settings) -> None:
    """Print the effective configuration, one environment variable per line, secrets masked."""
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        shown = "(unset)" if value is None else _mask_password(str(value))
        click.echo(f"{field.alias:<26} {shown}")
    click.echo(f"{'(kafka in use)':<26} {settings.kafka_bootstrap}")
    click.echo(f"{'(database in use)':<26} {_mask_password(settings.database)}")


def _mask_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


@cli.group()
def services() -> None:
    """Local Kafka (KRaft) and PostgreSQL: Docker when an engine answers, else native processes.

    \b
    Native: Kafka from its Maven Central jars (cached in MDP_CACHE_DIR), PostgreSQL from the
    server binaries, both on 127.0.0.1, state and logs in MDP_STATE_DIR.
    """


@services.command()
@click.pass_obj
def up(settings: Settings) -> None:
    """Start Kafka and PostgreSQL (idempotent), create the topics, print connection strings."""
    manager = ServiceManager(settings)
    try:
        endpoints = manager.up()
    except MarketDataError as exc:
        _fail(exc)
    click.echo(ServiceManager.describe(endpoints.statuses))
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}")
    click.echo(f"MARKET_DATA_DATABASE_URL={endpoints.database_url}")


@services.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the services that `up` started (by pid); leave their data in place."""
    try:
        stopped = ServiceManager(settings).down()
    except MarketDataError as exc:
        _fail(exc)
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@services.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show whether each service answers; exit 1 when one is down."""
    try:
        statuses = ServiceManager(settings).status()
    except MarketDataError as exc:
        _fail(exc)
    click.echo(ServiceManager.describe(statuses))
    if not all(s.running for s in statuses):
        sys.exit(1)


def main() -> None:
    cli(prog_name="mdp")

"""The `mdp` command: one subcommand per role of the pipeline, plus local services."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping

import click

from marketdata import __version__
from marketdata.errors import MarketDataError
from marketdata.logs import configure_logging
from marketdata.settings import Settings
from mdp.cli_common import fail
from mdp.cli_import import import_group
from mdp.cli_ops import config, dlq, migrate, services, topics
from mdp.cli_rollup import rollup
from mdp.cli_venues import backfill, produce
from mdp.pipeline import ROLES
from sinks.service import run_sink

log = logging.getLogger(__name__)


class MdpGroup(click.Group):
    """The one place a command's failure becomes a message: any :class:`MarketDataError` raised
    by a command (or by a subcommand of a group below) is one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MarketDataError as exc:
            fail(exc)


@click.group(cls=MdpGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
      import    load history from files (Binance's public data dumps)
      dlq       show and replay the dead letters
      services  start/stop/inspect local Kafka and PostgreSQL
      topics    create the pipeline's Kafka topics
      migrate   create or upgrade the database tables
      rollup    keep the 5m/15m/1h/1d rollups of 1m bars current (plain PostgreSQL)
      config    show the effective configuration (secrets masked)

    Configuration comes from environment variables only; see `mdp config` and the README.
    """
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    warn_unknown_variables(os.environ)
    ctx.obj = settings


def warn_unknown_variables(environ: Mapping[str, str]) -> None:
    """A misspelt variable would otherwise be ignored without a word: name it (never its value,
    which may be a secret) and the setting it most likely meant."""
    for name, likely in Settings.unknown_variables(environ):
        hint = f"; did you mean {likely}?" if likely else ""
        log.warning("%s is set but is not a setting of mdp: ignored%s", name, hint)


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
    BINANCE_SYMBOLS / IBKR_SYMBOLS / DTC_SYMBOLS is set. The rollup role (`mdp rollup
    --every 60`) keeps plain PostgreSQL's rollup tables current; on TimescaleDB it idles, the
    continuous aggregates' policies doing that. Crashed roles are restarted with backoff.
    Shows one status line per role; logs go to MDP_STATE_DIR/logs. Ctrl-C (or --duration)
    stops the roles in order (producers and rollup, processor, sink) and prints what the
    database holds.
    """
    from marketdata.inventory import describe  # noqa: PLC0415
    from mdp.pipeline import run_pipeline  # noqa: PLC0415

    chosen = [r.strip() for r in roles.split(",") if r.strip()]
    series = asyncio.run(run_pipeline(settings, chosen, duration_s=duration,
                                      services=services))  # fmt: skip
    click.echo(describe(series))


@cli.command("status")
@click.pass_obj
def status_of_data(settings: Settings) -> None:
    """Rows and the newest timestamp per exchange, symbol and interval in the database."""
    from marketdata.inventory import describe, stored_series  # noqa: PLC0415

    click.echo(describe(asyncio.run(stored_series(settings))))


@cli.command()
@click.pass_obj
def process(settings: Settings) -> None:
    """Run a faust worker: deduplicate and batch md.ticks.raw / md.bars.raw.

    \b
    Writes per-instrument batches (MDP_PROCESS_BATCH_RECORDS records at most) to md.ticks and
    md.bars, taking what has arrived as soon as the input runs dry (at most
    MDP_PROCESS_TAKE_MESSAGES messages, or MDP_PROCESS_BATCH_MS under sustained load). Drops
    ticks already emitted within MDP_DEDUPE_WINDOW_S / MDP_DEDUPE_WINDOW_KEYS, and superseded
    bar versions. Undecodable messages go to md.dlq. Workers with the same MDP_PROCESS_GROUP
    share the partitions. Metrics and /health on MDP_METRICS_HOST:MDP_PROCESS_WEB_PORT.
    Unless MDP_BARS_ENABLED=false, also builds bars of MDP_BARS_INTERVALS from the trades of
    MDP_BARS_TRADE_SOURCES (source derived.trades) to md.bars.raw, by event time
    (MDP_BARS_LATENESS_MS, MDP_BARS_REVISE_S, MDP_BARS_IDLE_CLOSE_S).
    """
    # Imported here: faust costs every other role half a second and tens of MB.
    from processors.worker import run_worker  # noqa: PLC0415

    run_worker(settings)


@cli.command()
@click.pass_obj
def sink(settings: Settings) -> None:
    """Consume md.ticks and md.bars and upsert them into TimescaleDB.

    \b
    Writes what has arrived as soon as the input runs dry, and what arrived meanwhile next: up
    to MDP_SINK_BATCH_ROWS rows, or MDP_SINK_BATCH_MS under sustained load. Each batch is one
    transaction; Kafka offsets are committed only after the database commit. Undecodable
    messages go to md.dlq with the reason. Metrics and /health on MDP_METRICS_HOST:PORT.
    Stops cleanly on SIGTERM/SIGINT. Run several in one group (MDP_SINK_GROUP) to scale out.
    """
    asyncio.run(run_sink(settings))


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
    from webhook.app import create_app  # noqa: PLC0415
    from webhook.server import serve  # noqa: PLC0415

    settings: Settings = ctx.obj
    app = create_app(settings)
    serve(app, settings)  # uvicorn, with a deadline on reading each request


@webhook.command("sign")
@click.argument("body", type=click.File("rb"), default="-")
@click.pass_obj
def webhook_sign(settings: Settings, body: click.utils.LazyFile) -> None:
    """Print the X-Signature of BODY (a file, or - for standard input) under
    TRADINGVIEW_HMAC_SECRET."""
    from webhook.auth import sign  # noqa: PLC0415

    if settings.tradingview_hmac_secret is None:
        fail(MarketDataError("TRADINGVIEW_HMAC_SECRET is not set"))
    click.echo(
        "sha256=" + sign(body.read(), settings.tradingview_hmac_secret.get_secret_value().encode())
    )


for command in (produce, backfill, import_group, migrate, rollup, topics, dlq, config, services):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="mdp")

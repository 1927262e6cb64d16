"""`mdp rollup`: plain PostgreSQL's rollups of 1m bars brought up to date (marketdata/rollups)."""

from __future__ import annotations

import time

import click
import psycopg

from marketdata.errors import TransientError
from marketdata.rollups import refresh, timescaledb_enabled
from marketdata.settings import Settings


@click.command()
@click.option(
    "--every", type=click.FloatRange(min=1), metavar="SECONDS",
    help="Run again every SECONDS until interrupted (default: once).",
)  # fmt: skip
@click.pass_obj
def rollup(settings: Settings, every: float | None) -> None:
    """Recompute the rollups (MDP_ROLLUP_INTERVALS) of 1m bars written since the last run.

    Plain PostgreSQL only: on TimescaleDB the rollups are continuous aggregates that their
    refresh policies keep current, and this command says so and exits.
    """
    while True:
        try:
            with psycopg.connect(settings.database, connect_timeout=10) as conn:
                if timescaledb_enabled(conn):
                    click.echo("TimescaleDB: the rollups are continuous aggregates, kept by policy")
                    return
                written = refresh(conn, settings.rollup_intervals)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise TransientError(f"cannot connect to PostgreSQL: {first}") from None
        click.echo(", ".join(f"{name}: {rows} rows" for name, rows in written.items()))
        if every is None:
            return
        time.sleep(every)

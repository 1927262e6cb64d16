"""`mdp rollup`: plain PostgreSQL's rollups of 1m bars brought up to date (mdp/rollup_job)."""

from __future__ import annotations

import asyncio

import click

from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from mdp.rollup_job import JobMetrics, run_every, run_once


@click.command()
@click.option(
    "--every", type=click.FloatRange(min=1), metavar="SECONDS",
    help="Run again every SECONDS until SIGTERM/SIGINT (default: once).",
)  # fmt: skip
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
    help="With --every: serve /metrics and /health on MDP_METRICS_HOST:PORT (`mdp run` does).",
)  # fmt: skip
@click.pass_obj
def rollup(settings: Settings, every: float | None, metrics_port: int | None) -> None:
    """Recompute the rollups (MDP_ROLLUP_INTERVALS) of 1m bars written since the last run.

    \b
    Plain PostgreSQL only: on TimescaleDB the rollups are continuous aggregates that their
    refresh policies keep current; this command says so and exits, or with --every idles
    until stopped (so that `mdp run` and compose need not know which database they have).
    Each run recomputes, whole, every bucket holding a 1m bar written or revised since the
    previous run (late bars and revisions of any age included), one transaction per rollup.
    Once: prints the rows written per rollup; exit status 1 if the database cannot be reached.
    With --every (`mdp run` runs `mdp rollup --every 60` as its `rollup` role, compose as its
    `rollup` service): logs each run; a database that is away or not migrated yet is retried
    with backoff, a WARNING line per attempt, never by exiting; SIGTERM/SIGINT cancels a run in
    progress (it rolls back, the next run redoes it) and exits within a few seconds.
    """
    if metrics_port is not None and every is None:
        raise click.UsageError("--metrics-port needs --every")

    async def main() -> str | None:
        stop = stop_on_signals()
        if every is None:
            return await run_once(settings, stop)
        await run_every(settings, every, stop, JobMetrics(), metrics_port)
        return None

    said = asyncio.run(main())
    if said is not None:
        click.echo(said)

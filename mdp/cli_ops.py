"""The operations commands: tables, topics, dead letters, configuration, local services."""

from __future__ import annotations

import asyncio
import sys

import click

from marketdata.kafka import ensure_topics
from marketdata.settings import Settings
from mdp.services.manager import ServiceManager


@click.command()
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

    if down_to:
        migrations.downgrade(settings, down_to)
    else:
        migrations.upgrade(settings, revision)
    click.echo(f"database at revision {migrations.current_revision(settings) or 'base'}")


@click.command()
@click.pass_obj
def topics(settings: Settings) -> None:
    """Create the pipeline's topics on KAFKA_BOOTSTRAP_SERVERS (those missing; idempotent).

    Uses MDP_TOPIC_PARTITIONS and MDP_TOPIC_REPLICATION. Run it once before the roles start on a
    cluster of your own; `mdp services up` does it for the local broker.
    """
    created = asyncio.run(ensure_topics(settings, settings.topics.all()))
    for name in settings.topics.all():
        click.echo(f"{name:<24} {'created' if name in created else 'exists'}")


@click.group()
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

    letters = asyncio.run(read_dead_letters(settings))
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

    sent, skipped = asyncio.run(run())
    verb = "would send" if dry_run else "sent"
    left = f"; {skipped} venue payloads left (use mdp backfill)" if skipped else ""
    click.echo(f"{verb} {sent} dead letters back to their topics{left}")


@click.command()
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


@click.group()
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
    endpoints = manager.up()
    click.echo(ServiceManager.describe(endpoints.statuses))
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={endpoints.kafka_bootstrap}")
    click.echo(f"MARKET_DATA_DATABASE_URL={endpoints.database_url}")


@services.command()
@click.pass_obj
def down(settings: Settings) -> None:
    """Stop the services that `up` started (by pid); leave their data in place."""
    stopped = ServiceManager(settings).down()
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@services.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show whether each service answers; exit 1 when one is down."""
    statuses = ServiceManager(settings).status()
    click.echo(ServiceManager.describe(statuses))
    if not all(s.running for s in statuses):
        sys.exit(1)

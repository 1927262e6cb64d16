"""`mdp process`: check the topics, then run one faust worker until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

import faust

from marketdata.errors import ConfigError
from marketdata.kafka import admin_client
from marketdata.settings import Settings
from processors.app import create_app


async def check_partitions(settings: Settings) -> None:
    """Raw and batched topics must partition alike, or a restarted worker would reload the wrong
    dedupe window (see ``processors.rebuild``)."""
    topics = settings.topics
    names = [topics.ticks_raw, topics.ticks, topics.bars_raw, topics.bars, topics.dlq]
    async with admin_client(settings) as admin:
        described = await admin.describe_topics(names)
    counts = {d["topic"]: len(d["partitions"]) for d in described if d["partitions"]}
    missing = [name for name in names if name not in counts]
    if missing:
        raise ConfigError(f"topics missing: {', '.join(missing)} (run `mdp topics` first)")
    if counts[topics.ticks_raw] != counts[topics.ticks]:
        raise ConfigError(
            f"{topics.ticks_raw} has {counts[topics.ticks_raw]} partitions but {topics.ticks} has "
            f"{counts[topics.ticks]}: they must have the same count"
        )


def run_worker(settings: Settings) -> None:
    asyncio.run(check_partitions(settings))
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()

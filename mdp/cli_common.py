"""What the `mdp` commands share: failing with a message, dates on the command line, and a
progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NoReturn

import click

from marketdata.errors import MarketDataError


def fail(error: MarketDataError) -> NoReturn:
    click.echo(f"mdp: error: {error}", err=True)
    sys.exit(1)


def utc(_: click.Context, __: click.Parameter, value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


DATE = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, and the ``progress(done, total)`` callback that moves it."""
    with click.progressbar(length=1, label=label, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        yield progress

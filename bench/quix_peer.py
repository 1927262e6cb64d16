"""The peer of `mdp sink` in bench/sink.py: a Quix Streams application storing the same topic's
ticks with Quix's own PostgreSQL sink, as a user choosing Quix over this project would write it.

    <quix venv>/bin/python bench/quix_peer.py --broker ... --topic ... --group ... --dsn ...

It runs in a virtualenv of its own (bench/sink.py makes it; see QUIX_REQUIREMENT there) because
quixstreams pins pydantic below the version this project requires, so it cannot be installed
beside the project. For that reason it imports nothing from the project: it reads the envelopes
(``{"kind":"ticks","v":1,"records":[...]}``) as plain JSON, one row per record, and leaves the
casts (ISO timestamps, decimal strings) to PostgreSQL, as a Quix user would.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

# Not installed in the project's environment (mypy there sees no stubs; see the docstring).
from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]
from quixstreams.sinks.community.postgresql import (  # type: ignore[import-not-found, unused-ignore]
    PostgreSQLSink,
)

# The primary key of market_data_ticks. Quix's sink checks the table's key against the one it
# is given, and fails a table whose key it was not told.
TICK_KEY = ("exchange", "symbol", "timestamp", "source", "trade_id")


def records(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per record of an envelope (the sink takes one mapping per row)."""
    rows: list[dict[str, Any]] = envelope["records"]
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--dsn", required=True, help="postgresql://user[:password]@host:port/db")
    parser.add_argument("--schema", required=True, help="where its market_data_ticks is")
    parser.add_argument("--commit-s", type=float, default=5.0, help="Quix's commit_interval")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    url = urlsplit(args.dsn)
    app = Application(
        broker_address=args.broker, consumer_group=args.group, auto_offset_reset="earliest",
        commit_interval=args.commit_s, state_dir=args.state_dir, loglevel=logging.WARNING,
        auto_create_topics=False, use_changelog_topics=False,
    )  # fmt: skip
    sink = PostgreSQLSink(
        host=url.hostname or "127.0.0.1", port=url.port or 5432, dbname=url.path.lstrip("/"),
        user=unquote(url.username or ""), password=unquote(url.password or ""),
        table_name="market_data_ticks", schema_name=args.schema,
        primary_key_columns=list(TICK_KEY), on_conflict_do_nothing=True, include_metadata=False,
    )  # fmt: skip
    frame = app.dataframe(app.topic(args.topic, value_deserializer="json"))
    frame.apply(records, expand=True).sink(sink)
    app.run()


if __name__ == "__main__":
    main()

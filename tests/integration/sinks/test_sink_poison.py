"""`mdp sink` as a process, fed valid records mixed with records its database refuses: every
valid one is stored exactly once, each refused one is in md.dlq with the database's message,
and the process goes on.

The records are valid, so the refusal comes from the database: a CHECK constraint and a trigger
raising a data exception, added to the real tables for this test's own values only (``NOT
VALID`` and ``WHEN``), so that they touch no other row and no other test.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psycopg
import pytest
from psycopg import sql

from marketdata.codec import decode, encode_ticks
from marketdata.dlq import HEADER_REASON, HEADER_STAGE
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from tests.integration.sinks.support import (
    bar_messages,
    committed_total,
    count_rows,
    make_bar,
    make_ticks,
    publish,
    read_dead_letters,
    sink_process,
    tick_messages,
    wait_for_rows,
)


@pytest.fixture
def refusals(sink_settings: Settings, unique: str) -> Iterator[None]:
    """The tables refuse trade ids and symbols that begin with this test's name."""
    names = {
        "check": sql.Identifier(f"{unique}_check"),
        "bar_check": sql.Identifier(f"{unique}_bar_check"),
        "function": sql.Identifier(f"{unique}_refuse"),
        "trigger": sql.Identifier(f"{unique}_refuse"),
        "checked": sql.Literal(f"{unique}-check%"),
        "raised": sql.Literal(f"{unique}-raise%"),
        "bar": sql.Literal(f"{unique}-BAR%"),
    }
    setup = [
        "ALTER TABLE market_data_ticks ADD CONSTRAINT {check}"
        " CHECK (trade_id NOT LIKE {checked}) NOT VALID",
        "ALTER TABLE market_data_ohlcv ADD CONSTRAINT {bar_check}"
        " CHECK (symbol NOT LIKE {bar}) NOT VALID",
        "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'trade id % refused by a test trigger', NEW.trade_id"
        " USING ERRCODE = 'invalid_parameter_value'; END $$",
        "CREATE TRIGGER {trigger} BEFORE INSERT ON market_data_ticks FOR EACH ROW"
        " WHEN (NEW.trade_id LIKE {raised}) EXECUTE FUNCTION {function}()",
    ]
    teardown = [
        "DROP TRIGGER IF EXISTS {trigger} ON market_data_ticks",
        "DROP FUNCTION IF EXISTS {function}()",
        "ALTER TABLE market_data_ohlcv DROP CONSTRAINT IF EXISTS {bar_check}",
        "ALTER TABLE market_data_ticks DROP CONSTRAINT IF EXISTS {check}",
    ]
    with psycopg.connect(sink_settings.database, autocommit=True) as conn:
        try:
            for statement in setup:
                conn.execute(sql.SQL(statement).format(**names))
            yield
        finally:
            for statement in teardown:
                conn.execute(sql.SQL(statement).format(**names))


async def test_refused_records_among_1000_valid_are_dead_lettered_and_the_sink_goes_on(
    sink_settings: Settings,
    refusals: None,
    unique: str,
    processes: list[subprocess.Popen[bytes]],
    log: Path,
) -> None:
    valid = make_ticks(1000)
    checked = msgspec.structs.replace(valid[0], trade_id=f"{unique}-check")
    raised = msgspec.structs.replace(valid[1], trade_id=f"{unique}-raise")
    bar = make_bar(3, symbol=f"{unique}-BAR")
    key = instrument_key("BINANCE", "SYM0")
    messages = tick_messages(valid, per_message=10)
    mixed = [
        *messages[:30],
        (key, encode_ticks([checked])),
        *messages[30:70],
        (key, encode_ticks([*valid[:4], raised, *valid[4:6]])),  # replays and one refused
        (key, b"[" * 5000),  # deep nesting: the decoder's dead letter, not the database's
        *messages[70:],
    ]
    processes.append(sink_process(sink_settings, log))
    await publish(sink_settings, sink_settings.topics.ticks, mixed)
    await publish(sink_settings, sink_settings.topics.bars,
                  bar_messages([make_bar(0), bar, make_bar(1)]))  # fmt: skip
    assert await wait_for_rows(sink_settings, 1000) == 1000
    assert await wait_for_rows(sink_settings, 2, "market_data_ohlcv") == 2

    letters = await read_dead_letters(sink_settings, f"{unique}-dlq", 4)
    assert all(dict(letter.headers)[HEADER_STAGE] == b"sink" for letter in letters)
    reasons = {}
    for letter in letters:
        reason = dict(letter.headers)[HEADER_REASON].decode()
        if letter.value == b"[" * 5000:
            reasons["nested"] = reason
            continue
        (record,) = decode(letter.value).records
        reasons[record.trade_id if isinstance(record, Tick) else record.symbol] = reason
    assert reasons.keys() == {"nested", checked.trade_id, raised.trade_id, bar.symbol}
    assert reasons[checked.trade_id].startswith(
        f'[23514] new row for relation "market_data_ticks" violates check constraint'
        f' "{unique}_check"'
    )
    assert reasons[raised.trade_id] == (
        f"[22023] trade id {unique}-raise refused by a test trigger"
        " (record 5 of the 7 in the message, re-encoded alone)"
    )
    assert reasons[bar.symbol].startswith('[23514] new row for relation "market_data_ohlcv"')

    await asyncio.sleep(1.0)  # nothing else arrives, nothing is stored twice
    assert count_rows(sink_settings) == 1000
    with psycopg.connect(sink_settings.database) as conn:
        row = conn.execute("SELECT count(DISTINCT trade_id) FROM market_data_ticks").fetchone()
    assert row == (1000,)
    assert processes[0].poll() is None  # still running
    topic = sink_settings.topics.ticks
    assert await committed_total(sink_settings, sink_settings.sink_group, topic) == len(mixed)
    processes[0].send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(processes[0].wait, 10) == 0

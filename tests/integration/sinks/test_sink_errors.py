"""Each kind of database failure the sink tells apart, provoked for real on PostgreSQL.

Retried: a deadlock and a serialization failure between the sink and a second session, and the
sink's connection killed with ``pg_terminate_backend`` in the middle of a write; each batch ends
up stored exactly once. Rejected: values the database refuses although the records accept them
(tables stricter than the records: a varchar, a CHECK, an index that cannot hold a row), and
values the client cannot dump; the other rows are stored and each refused record is in md.dlq
with the database's message.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterator
from decimal import Decimal

import msgspec
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from psycopg import sql

from marketdata.codec import decode, encode_bars, encode_ticks
from marketdata.database import connect
from marketdata.dlq import (
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_STAGE,
    HEADER_TOPIC,
)
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.topics import instrument_key
from sinks.accumulator import PartitionBatch, Pending
from sinks.isolate import Isolation
from sinks.writer import BatchWriter, Tables
from tests.integration.polling import wait_until
from tests.integration.sinks.support import (
    bar_messages,
    committed_total,
    count_rows,
    make_bar,
    make_ticks,
    metric,
    publish,
    read_dead_letters,
    running_sink,
    strict_tables,
    tick_messages,
    wait_for_rows,
)

MakeTables = Callable[..., Tables]


@pytest.fixture
def strict(sink_settings: Settings, unique: str) -> Iterator[MakeTables]:
    """Tables of this test's own, dropped at the end."""
    made: list[Tables] = []

    def make(*statements: str) -> Tables:
        made.append(strict_tables(sink_settings.database, unique, *statements))
        return made[-1]

    yield make
    with psycopg.connect(sink_settings.database, autocommit=True) as conn:
        for tables in made:
            for table in (tables.ticks, tables.bars):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def _distinct(settings: Settings, table: str) -> tuple[int, int]:
    with psycopg.connect(settings.database) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*), count(DISTINCT trade_id) FROM {}").format(
                sql.Identifier(table)
            )
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _insert(conn: psycopg.Connection[tuple[object, ...]], table: str, tick: Tick) -> None:
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (exchange, symbol, timestamp, source, trade_id, price, size, side,"
            " received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(table)),
        (tick.exchange, tick.symbol, tick.timestamp, tick.source, tick.trade_id, tick.price,
         tick.size, tick.side, tick.received_at),
    )  # fmt: skip


def _sink_waiting_on_a_lock(settings: Settings, table: str) -> list[int]:
    """The backends (the sink's) whose statement on ``table`` waits for a lock."""
    with psycopg.connect(settings.database, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND query LIKE %s",
            (f"%{table}%",),
        ).fetchall()
    return [int(pid) for (pid,) in rows]


async def _wait_for_blocked_sink(settings: Settings, table: str) -> int:
    blocked: list[int] = []

    def check() -> bool:
        blocked[:] = _sink_waiting_on_a_lock(settings, table)
        return bool(blocked)

    await wait_until(check, within=30)
    return blocked[0]


# Retried ------------------------------------------------------------------------------------


async def test_a_deadlock_with_another_session_is_retried_and_the_batch_stored_once(
    sink_settings: Settings, strict: MakeTables, caplog: pytest.LogCaptureFixture
) -> None:
    tables = strict()
    ticks = make_ticks(20, symbols=1)
    other = psycopg.connect(sink_settings.database)
    try:
        # Only the sink's backend may detect the deadlock, so that it is the sink that fails.
        other.execute("SET deadlock_timeout = '60s'")
        _insert(other, tables.ticks, ticks[-1])  # uncommitted: the sink's COPY will wait for it
        async with running_sink(sink_settings, tables) as sink:
            await publish(sink_settings, sink_settings.topics.ticks, tick_messages(ticks, 20))
            await _wait_for_blocked_sink(sink_settings, tables.ticks)
            # The sink holds ticks[0] and waits for ticks[-1]; this waits for ticks[0].
            await asyncio.to_thread(_insert, other, tables.ticks, ticks[0])
            other.commit()
            assert await wait_for_rows(sink_settings, 20, tables.ticks) == 20
            assert metric(sink, "mdp_sink_retries_total") >= 1
            assert metric(sink, "mdp_sink_rows_rejected_total", table=tables.ticks) == 0
    finally:
        other.close()
    assert _distinct(sink_settings, tables.ticks) == (20, 20)
    assert "deadlock detected" in caplog.text


async def test_a_serialization_failure_is_retried_and_the_batch_stored_once(
    sink_settings: Settings, strict: MakeTables, caplog: pytest.LogCaptureFixture
) -> None:
    tables = strict()
    serializable = sink_settings.model_copy(
        update={
            "database_url": sink_settings.database
            + "?options=-c%20default_transaction_isolation%3Dserializable"
        }
    )
    ticks = make_ticks(20, symbols=1)
    other = psycopg.connect(sink_settings.database)
    try:
        _insert(other, tables.ticks, ticks[5])
        async with running_sink(serializable, tables) as sink:
            await publish(sink_settings, sink_settings.topics.ticks, tick_messages(ticks, 20))
            await _wait_for_blocked_sink(sink_settings, tables.ticks)
            # Committed after the sink's snapshot: its ON CONFLICT cannot see the row it meets.
            other.commit()
            assert await wait_for_rows(sink_settings, 20, tables.ticks) == 20
            assert metric(sink, "mdp_sink_retries_total") >= 1
    finally:
        other.close()
    assert _distinct(sink_settings, tables.ticks) == (20, 20)
    assert "could not serialize access" in caplog.text


async def test_a_connection_terminated_mid_write_is_retried_and_stored_once(
    sink_settings: Settings, strict: MakeTables
) -> None:
    tables = strict()
    ticks = make_ticks(60, symbols=1)
    other = psycopg.connect(sink_settings.database)
    try:
        _insert(other, tables.ticks, ticks[10])
        async with running_sink(sink_settings, tables) as sink:
            await publish(sink_settings, sink_settings.topics.ticks, tick_messages(ticks[:20], 20))
            pid = await _wait_for_blocked_sink(sink_settings, tables.ticks)
            with psycopg.connect(sink_settings.database, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            other.rollback()
            assert await wait_for_rows(sink_settings, 20, tables.ticks) == 20
            assert metric(sink, "mdp_sink_retries_total") >= 1
            await publish(sink_settings, sink_settings.topics.ticks, tick_messages(ticks[20:], 20))
            assert await wait_for_rows(sink_settings, 60, tables.ticks) == 60
    finally:
        other.close()
    assert _distinct(sink_settings, tables.ticks) == (60, 60)


# Rejected -----------------------------------------------------------------------------------


def _poison_tick(n: int, **changes: object) -> Tick:
    return msgspec.structs.replace(make_ticks(n + 1)[n], **changes)


async def test_rows_the_database_refuses_are_dead_lettered_and_the_rest_stored_once(
    sink_settings: Settings, strict: MakeTables, unique: str
) -> None:
    tables = strict(
        "ALTER TABLE {ticks} ALTER COLUMN symbol TYPE varchar(12)",
        "ALTER TABLE {ticks} ADD CHECK (trade_id NOT LIKE 'reject-%%')",
        "CREATE INDEX ON {ticks} ((extras::text))",
        "ALTER TABLE {bars} ALTER COLUMN symbol TYPE varchar(12)",
        "ALTER TABLE {bars} ADD CHECK (volume < 1000000)",
    )
    valid = make_ticks(1000)
    too_long = _poison_tick(5001, symbol="SYMBOL-TOO-LONG")
    inside = _poison_tick(5002, symbol="ALSO-TOO-LONG-SYMBOL")
    checked = _poison_tick(5003, trade_id="reject-1")
    # Random hex does not compress: the index entry is far above the btree maximum (2704).
    huge = _poison_tick(5004, extras={"blob": secrets.token_hex(3000)})
    messages = tick_messages(valid, per_message=10)
    key = instrument_key("BINANCE", "SYM0")
    group = [*valid[:3], inside, *valid[3:9]]  # one bad record among ten in one message
    messages = [
        *messages[:10],
        (key, encode_ticks([too_long])),
        *messages[10:50],
        (key, encode_ticks(group)),
        (key, encode_ticks([checked])),
        *messages[50:],
        (key, encode_ticks([huge])),
    ]
    bars = [make_bar(m) for m in range(5)]
    bad_bars = [make_bar(9, symbol="BAR-SYMBOL-TOO-LONG"),
                msgspec.structs.replace(make_bar(8), volume=Decimal(2_000_000))]  # fmt: skip
    bar_batch = [(key, encode_bars([*bars[:2], bad_bars[1], *bars[2:]]))]
    async with running_sink(sink_settings, tables) as sink:
        await publish(sink_settings, sink_settings.topics.ticks, messages)
        await publish(sink_settings, sink_settings.topics.bars,
                      [*bar_batch, *bar_messages(bad_bars[:1])])  # fmt: skip
        assert await wait_for_rows(sink_settings, 1000, tables.ticks) == 1000
        assert await wait_for_rows(sink_settings, 5, tables.bars) == 5
        await wait_until(lambda: metric(sink, "mdp_sink_dead_letters_total") >= 6, within=30)
        assert metric(sink, "mdp_sink_rows_rejected_total", table=tables.ticks) == 4
        assert metric(sink, "mdp_sink_rows_rejected_total", table=tables.bars) == 2
        assert metric(sink, "mdp_sink_isolations_total") >= 1
        # The stream goes on: a message after the poisons is still stored.
        later = make_ticks(1010)[1000:]
        await publish(sink_settings, sink_settings.topics.ticks, tick_messages(later, 10))
        assert await wait_for_rows(sink_settings, 1010, tables.ticks) == 1010
        assert sink.ready()
    assert _distinct(sink_settings, tables.ticks) == (1010, 1010)
    assert count_rows(sink_settings, tables.bars) == 5
    tick_topic = sink_settings.topics.ticks
    committed = await committed_total(sink_settings, sink_settings.sink_group, tick_topic)
    assert committed == len(messages) + len(tick_messages(later, 10))

    letters = await read_dead_letters(sink_settings, f"{unique}-dlq", 6)
    assert len(letters) == 6
    by_record: dict[str, tuple[ConsumerRecord[bytes, bytes], str]] = {}
    for letter in letters:
        headers = dict(letter.headers)
        assert headers[HEADER_STAGE] == b"sink"
        (record,) = decode(letter.value).records
        name = record.trade_id if isinstance(record, Tick) else f"{record.symbol}@{record.volume}"
        by_record[name] = (letter, headers[HEADER_REASON].decode())
    reason = {name: text for name, (_, text) in by_record.items()}
    bar_long, bar_checked = (f"{b.symbol}@{b.volume}" for b in bad_bars)
    assert set(reason) == {"5001", "5002", "reject-1", "5004", bar_long, bar_checked}
    assert reason["5001"] == "[22001] value too long for type character varying(12)"
    assert reason["5002"] == (
        "[22001] value too long for type character varying(12)"
        " (record 4 of the 10 in the message, re-encoded alone)"
    )
    assert reason["reject-1"].startswith(f'[23514] new row for relation "{tables.ticks}" violates')
    assert reason["5004"].startswith("[54000] index row size")
    assert reason[bar_long] == "[22001] value too long for type character varying(12)"
    assert reason[bar_checked].startswith(f'[23514] new row for relation "{tables.bars}"')
    assert reason[bar_checked].endswith("(record 3 of the 6 in the message, re-encoded alone)")
    # A record alone in its message is dead-lettered as it came; each carries its origin.
    single, _ = by_record["5001"]
    assert single.value == encode_ticks([too_long])
    assert dict(single.headers)[HEADER_OFFSET] == b"10"  # the 11th message for SYM0
    grouped, _ = by_record["5002"]
    assert grouped.value == encode_ticks([inside])
    assert dict(grouped.headers)[HEADER_TOPIC] == tick_topic.encode()
    source = await _message_at(sink_settings, dict(grouped.headers))
    assert source == encode_ticks(group)  # the message it was taken out of


async def _message_at(settings: Settings, headers: dict[str, bytes]) -> bytes | None:
    """The value of the message a dead letter's origin headers point at."""
    tp = TopicPartition(headers[HEADER_TOPIC].decode(), int(headers[HEADER_PARTITION]))
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, int(headers[HEADER_OFFSET]))
        message = await asyncio.wait_for(consumer.getone(), 30)
        value: bytes | None = message.value
        return value
    finally:
        await consumer.stop()


def _message(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="md.ticks", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=None,
        value=b"", checksum=None, serialized_key_size=0, serialized_value_size=0, headers=(),
    )  # fmt: skip


async def test_values_the_client_cannot_dump_and_an_oversized_key_are_isolated(
    sink_settings: Settings, strict: MakeTables
) -> None:
    """Records built around their own checks (as a bug or an older build might): the write
    fails in the client, or on the table's own key index, and only those records are refused."""
    tables = strict()
    ticks = make_ticks(50)
    precise, surrogate, long_key = make_ticks(53)[50:]
    msgspec.structs.force_setattr(precise, "price", Decimal("1." + "1" * 20_000))
    msgspec.structs.force_setattr(surrogate, "symbol", "SYM\ud800")
    msgspec.structs.force_setattr(long_key, "trade_id", secrets.token_hex(2000))
    rows = [*ticks[:20], precise, *ticks[20:30], surrogate, *ticks[30:], long_key]
    part = PartitionBatch(opened_at=0.0, ticks=rows,
                          tick_messages=[(_message(n), 1) for n in range(len(rows))])  # fmt: skip
    pending = Pending({TopicPartition("md.ticks", 0): part})
    writer = BatchWriter(tables)
    conn = await connect(sink_settings.database)
    try:
        await writer.prepare(conn)
        isolation = Isolation(pending)
        await isolation.run(lambda t, b: writer.write(conn, t, b))
    finally:
        await conn.close()
    assert _distinct(sink_settings, tables.ticks) == (50, 50)
    reasons = {r.origin.message.offset: r.reason for r in isolation.rejected}
    assert reasons.keys() == {20, 31, 52}
    assert reasons[20].startswith("decimal too precise for PostgreSQL numeric binary format")
    assert reasons[31].startswith("UnicodeEncodeError: 'utf-8' codec can't encode")
    assert reasons[52].startswith("[54000] index row size")


@pytest.fixture(autouse=True)
def _sink_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sinks")

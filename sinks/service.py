"""`mdp sink`: consume the batch topics, upsert into TimescaleDB, commit offsets after the database.

Delivery: rows are written in one transaction per flush, dead letters are delivered, and only
then are the offsets committed. A crash anywhere before the commit replays the flush, which the
idempotent upserts absorb; so every event is stored exactly once. One flush is written at a
time, in order, so a partition's offsets are never committed past rows not yet stored.

Batching adapts to the load (:mod:`sinks.accumulator`): a flush starts as soon as the consumer
holds nothing more fetched, so at low rates every message is written at once, without waiting
for a batch window. While a flush is written the sink keeps consuming (up to the size cap, which
bounds memory), so under load the next flush holds everything that came in meanwhile: the
slower the database, the bigger the batches. MDP_SINK_BATCH_MS caps how long a row may wait
while the input never runs dry.

A database that goes away (or a serialization failure, a deadlock, a shutdown: see
:mod:`sinks.errors`) pauses consumption: the flush in hand is retried with capped backoff,
nothing is committed, and consumption resumes once it is stored. A flush the database rejects
for its data is bisected (:mod:`sinks.isolate`): the good rows are stored, each rejected record
is dead-lettered with the database's message, then the offsets are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TypeVar

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import CollectorRegistry

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.database import connect
from marketdata.dlq import DeadLetters, log_dead_letter
from marketdata.errors import MarketDataError, TransientError
from marketdata.kafka import create_consumer, create_producer, kafka_errors, translate
from marketdata.metrics import MetricsServer
from marketdata.records import Tick
from marketdata.settings import Settings
from marketdata.signals import stop_on_signals
from marketdata.stopping import finish_within, unless_stopped
from sinks.accumulator import Accumulator, Pending
from sinks.errors import classify, describe
from sinks.isolate import Isolation, dead_letter
from sinks.metrics import SinkMetrics
from sinks.writer import AnyConnection, BatchWriter, WriteResult

log = logging.getLogger(__name__)

LAG_EVERY_S = 1.0
# The longest a poll waits for a first message while nothing is buffered: it returns as soon as
# one is fetched, so this only spaces the loop's chores (lag, retries) when the input is idle.
IDLE_POLL_S = 0.1
# At SIGTERM: one attempt to store what is buffered, then each client closed, all well within
# the 5 s a supervisor gives before SIGKILL.
DRAIN_S = 1.5
STEP_PAUSE_S = 1.0
CLOSE_S = 1.0
T = TypeVar("T")
IDLE = psycopg.pq.TransactionStatus.IDLE


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.sink.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class Sink:
    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.topics = (settings.topics.ticks, settings.topics.bars)
        self.metrics = SinkMetrics(registry or CollectorRegistry())
        self.accumulator = Accumulator(settings.sink_batch_rows, settings.sink_batch_ms / 1000)
        self.writer = BatchWriter()
        self.backoff = Backoff(maximum=settings.sink_max_backoff_s)
        self._pending: Pending | None = None
        self._flushing: asyncio.Task[bool] | None = None  # the write of _pending, in progress
        self._isolation: Isolation | None = None  # of the pending flush, once it was rejected
        self._retry_at = 0.0
        self._paused = False
        self._lag_at = 0.0
        self._committed: dict[TopicPartition, int] = {}
        # Until messages are seen, assume processor-sized batches rather than single records.
        self._rows_per_message = 100.0
        self._conn: AnyConnection | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._dead_letters: DeadLetters | None = None
        self._server = MetricsServer(
            self.metrics.registry, self.ready, settings.metrics_host, settings.metrics_port
        )

    # Lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._server.start()
        try:
            self._conn = await self._connect()
        except TransientError as exc:
            # Not a reason to exit: the first flush connects, and waits for the server.
            log.warning("%s; batches wait for it", exc)
        self._producer = create_producer(self.settings)
        self._consumer = create_consumer(self.settings, group_id=self.settings.sink_group)
        async with kafka_errors():
            await self._producer.start()
            self._consumer.subscribe(self.topics, listener=_ForgetRevoked(self))
            await self._consumer.start()
        self._dead_letters = DeadLetters(self._producer, self.settings.topics.dlq, "sink")
        log.info("sink consuming %s as group %s", ", ".join(self.topics), self.settings.sink_group)

    async def aclose(self) -> None:
        """Leave the group, flush the producer, close the connection and the metrics port, each
        for a bounded time: a broker or database that hangs cannot hold the process."""
        clients = [client.stop() for client in (self._consumer, self._producer) if client]
        with contextlib.suppress(Exception):
            await finish_within(asyncio.gather(*clients, return_exceptions=True), CLOSE_S)
        for close in (self._conn.close if self._conn else None, self._server.aclose):
            if close is not None:
                with contextlib.suppress(Exception):
                    await finish_within(close(), CLOSE_S)

    async def __aenter__(self) -> Sink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def ready(self) -> bool:
        # Not while a flush waits for the database to come back; a flush in progress is normal.
        return self._consumer is not None and not self._paused and self._conn is not None

    @property
    def metrics_port(self) -> int:
        return self._server.port

    # The loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then write what is buffered once and commit it.

        A step in progress when ``stop`` is set is cancelled rather than awaited: it may wait
        for a broker that no longer answers. A flush in progress goes on, and gets the drain's
        bounded time to end: it may be a write to a database that no longer answers.
        """
        while not stop.is_set():
            try:
                await unless_stopped(self.step(), stop)
            except Exception as exc:
                # A fetch or a lag query the broker fails (or anything a message could still
                # provoke) must not end the process: what is buffered stays, uncommitted.
                log.warning("consuming failed (%s); going on in %.1fs", describe(exc), STEP_PAUSE_S)
                await wait_or_stop(stop, STEP_PAUSE_S)
        await self._drain()

    async def step(self) -> None:
        if time.monotonic() >= self._lag_at:
            self._lag_at = time.monotonic() + LAG_EVERY_S
            await self._measure_lag()
        flushing = self._flushing
        if flushing is not None:
            if not flushing.done():
                await self._gather(flushing)
                return
            self._flushing = None
            flushing.result()  # a failure of the write itself was handled (retry scheduled)
        if self._pending is not None:
            wait = self._retry_at - time.monotonic()
            if wait <= 0:
                self._flushing = asyncio.ensure_future(self._flush())
            else:
                await self._poll(min(wait, 0.2))  # paused: keeps the group membership alive
            return
        if self.accumulator.empty:
            # Returns as soon as a message is fetched.
            dry = await self._poll(IDLE_POLL_S)
        else:
            # Take what the consumer already holds, without waiting for more.
            dry = await self._poll(0)
        reason = self.accumulator.due(dry=dry)
        if reason is not None:
            self.metrics.batch_reasons.labels(reason).inc()
            self._pending = self.accumulator.take()
            self._flushing = asyncio.ensure_future(self._flush())

    async def _gather(self, flushing: asyncio.Task[bool]) -> None:
        """Consume while ``flushing`` is written, until it ends or a poll returns: what comes in
        meanwhile makes the next flush. Nothing is fetched once the batch is full, so memory
        stays bounded by two batches (the one written, the one gathered)."""
        if self.accumulator.room == 0:
            await asyncio.wait({flushing})
            return
        poll = asyncio.ensure_future(self._poll(IDLE_POLL_S))
        try:
            await asyncio.wait({flushing, poll}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # A poll cancelled while it waits has taken nothing from the consumer: what it
            # would have returned stays fetched for the next one.
            poll.cancel()
            await asyncio.wait({poll})
        if not poll.cancelled():
            poll.result()

    async def _poll(self, timeout_s: float) -> bool:
        """Add what the consumer fetched (waiting up to ``timeout_s`` for a first message) to
        the batch; return whether the input ran dry: the consumer holds nothing more fetched."""
        consumer = self._require(self._consumer)
        if self._paused:
            # Partitions assigned by a rebalance while the database is away stay paused too.
            consumer.pause(*consumer.assignment())
        # Fetch no more messages than the batch has room for, judged by the rows a message has
        # held so far: memory stays bounded by the batch size whatever the backlog.
        limit = max(1, int(self.accumulator.room / self._rows_per_message))
        async with kafka_errors():
            fetched = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=limit)
        before, count = self.accumulator.rows, 0
        for tp, messages in fetched.items():
            count += len(messages)
            self.accumulator.add(tp, messages)
        if count:
            self.metrics.messages.inc(count)
            observed = max(1.0, (self.accumulator.rows - before) / count)
            # Quick to believe bigger messages (memory), slow to believe smaller ones.
            self._rows_per_message = max(observed, 0.7 * self._rows_per_message + 0.3 * observed)
        # getmany returns everything the fetcher holds, up to the limit: fewer means no more.
        return count < limit

    async def _flush(self) -> bool:
        """Write, dead-letter and commit the pending flush; on a transient failure, schedule a
        retry and pause consumption. Return whether it was stored."""
        pending = self._require(self._pending)
        started = time.perf_counter()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await self._connect()
            result = await self._write(self._conn, pending)
            await self._send_dead_letters(pending)
        except Exception as exc:
            # Whatever is not the rows' fault (they are isolated in _write) is retried: the
            # sink waits for its database or broker rather than exiting.
            if self._pending is pending:
                await self._schedule_retry(exc)
            else:
                # A rebalance took every partition of the flush meanwhile (see forget): there
                # is nothing left to retry, and nothing to pause for.
                log.warning("batch not stored (%s); its partitions were revoked", describe(exc))
            return False
        await self._commit(pending)
        self._isolation = None
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self.metrics.batch_rows.observe(pending.size)
        ticks, bars = self.writer.tables.ticks, self.writer.tables.bars
        self.metrics.rows.labels(ticks).inc(result.ticks_inserted)
        self.metrics.duplicates.labels(ticks).inc(result.ticks_staged - result.ticks_inserted)
        self.metrics.rows.labels(bars).inc(result.bars_written)
        self.metrics.duplicates.labels(bars).inc(result.bars_staged - result.bars_written)
        self._pending = None
        if self._paused:
            self._resume()
        return True

    async def _write(self, conn: AnyConnection, pending: Pending) -> WriteResult:
        """Store the flush in one transaction or, when the database rejects some of its rows,
        bisect it (resuming a bisection a retriable failure interrupted)."""
        if self._isolation is None:
            try:
                return await self.writer.write(conn, pending.ticks(), pending.bars())
            except Exception as exc:
                failure = classify(exc)
                if failure.retriable:
                    raise
                log.warning("batch of %d rows rejected (%s); isolating the rows at fault",
                            pending.size, failure.reason)  # fmt: skip
                self.metrics.isolations.inc()
                self._isolation = Isolation(pending)
        isolation = self._isolation
        before = isolation.writes
        try:
            await isolation.run(lambda ticks, bars: self.writer.write(conn, ticks, bars))
        finally:
            self.metrics.isolation_writes.inc(isolation.writes - before)
        return isolation.result

    async def _send_dead_letters(self, pending: Pending) -> None:
        """Deliver the flush's dead letters (undecodable messages, rejected records) and wait
        for the broker's acknowledgement: only then may the offsets move past them."""
        rejected = self._isolation.rejected if self._isolation is not None else []
        dead = pending.dead() + [dead_letter(entry) for entry in rejected]
        if not dead:
            return
        dead_letters = self._require(self._dead_letters)
        try:
            deliveries = [await dead_letters.send(message, reason) for message, reason in dead]
            await asyncio.gather(*deliveries)
        except KafkaError as exc:
            raise translate(exc) from exc
        for message, reason in dead:
            log_dead_letter(message, reason)
        self.metrics.dead_letters.inc(len(dead))
        for entry in rejected:
            tables = self.writer.tables
            self.metrics.rejected.labels(
                tables.ticks if isinstance(entry.record, Tick) else tables.bars
            ).inc()

    async def _commit(self, pending: Pending) -> None:
        consumer = self._require(self._consumer)
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in pending.offsets().items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: the rows are stored, the next owner re-reads them
            # from the last commit and the upserts absorb the replay.
            log.warning("offsets not committed (%s); the next owner replays them", exc)
        except KafkaError as exc:
            # The broker is away: the rows are stored, and the next commit (offsets are
            # cumulative) or a restart's replay, absorbed by the upserts, covers these.
            log.warning("offsets not committed (%s); a later commit covers them", exc)

    async def _schedule_retry(self, exc: BaseException) -> None:
        delay = self.backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        self.metrics.retries.inc()
        conn = self._conn
        if conn is not None and (conn.broken or conn.info.transaction_status != IDLE):
            # Left inside a transaction (an interrupted rollback): every later write would fail
            # with "current transaction is aborted", so start again on a new connection.
            with contextlib.suppress(Exception):
                await finish_within(conn.close(), CLOSE_S)
        if conn is not None and conn.closed:
            self._conn = None
        if not self._paused:
            self._paused = True
            consumer = self._require(self._consumer)
            consumer.pause(*consumer.assignment())
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("batch not stored (%s); consumption paused, retry in %.1fs", first, delay)

    def _resume(self) -> None:
        consumer = self._require(self._consumer)
        consumer.resume(*consumer.paused())
        self._paused = False
        log.info("batch stored after %d retries; consumption resumed", self.backoff.attempts)
        self.backoff.reset()

    def forget(self, revoked: set[TopicPartition]) -> None:
        """Drop what is buffered for revoked partitions, uncommitted: their next owner re-reads
        it. Nothing is lost, and rows already written are absorbed by the upserts."""
        dropped = self.accumulator.discard(revoked)
        if self._pending is not None:
            dropped += sum(
                self._pending.parts[tp].size for tp in revoked if tp in self._pending.parts
            )
            self._pending.drop(revoked)
            # A bisection in progress held the revoked partitions' rows too: start it again
            # on what is left (the rows it stored are absorbed by the upserts).
            self._isolation = None
            if not self._pending.parts:
                self._pending = None
                if self._paused:
                    self._resume()
        if dropped:
            self.metrics.abandoned.inc(dropped)
            log.info("revoked %d partitions, %d buffered rows left to their next owner",
                     len(revoked), dropped)  # fmt: skip

    async def _drain(self) -> None:
        """At shutdown: one bounded attempt to store and commit what is buffered (the flush in
        progress or held for a retry, then what came in meanwhile), else leave it."""
        try:
            await finish_within(self._store_buffered(), DRAIN_S)
        except Exception as exc:
            log.warning("storing what is buffered failed (%s)", describe(exc))
        unstored = (self._pending.size if self._pending is not None else 0) + self.accumulator.rows
        if unstored:
            self.metrics.abandoned.inc(unstored)
            log.warning(
                "shutting down with %d rows unstored; they stay uncommitted in Kafka", unstored
            )

    async def _store_buffered(self) -> None:
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            # Cancelled with this coroutine when the drain's time is up.
            await flushing
        elif self._pending is not None:
            await self._flush()
        if self._pending is None and not self.accumulator.empty:
            # Only after the flush before it was stored: offsets are committed in order.
            self._pending = self.accumulator.take()
            await self._flush()

    async def _measure_lag(self) -> None:
        consumer = self._require(self._consumer)
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            if tp not in self._committed:
                # Once per partition: where the group stood before this process.
                self._committed[tp] = await consumer.committed(tp) or 0
            lag = max(0, highwater - self._committed[tp])
            self.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def _connect(self) -> AnyConnection:
        conn = await connect(self.settings.database)
        try:
            await self.writer.prepare(conn)
        except psycopg.errors.UndefinedTable:
            await conn.close()
            raise MarketDataError(
                "the market-data tables do not exist: run `mdp migrate` first"
            ) from None
        return conn

    @staticmethod
    def _require(value: T | None) -> T:
        if value is None:
            raise MarketDataError("sink not started")
        return value


async def run_sink(settings: Settings) -> None:
    """The `mdp sink` process: run until SIGTERM or SIGINT, then stop cleanly."""
    stop = stop_on_signals()
    sink = Sink(settings)
    try:
        # A broker that hangs while the sink starts must not hold SIGTERM either.
        if await unless_stopped(sink.start(), stop):
            log.info("metrics on http://%s:%d/metrics", settings.metrics_host, sink.metrics_port)
            await sink.run(stop)
    finally:
        await sink.aclose()
    log.info("sink stopped")

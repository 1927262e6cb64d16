"""Publishing normalised records: small per-instrument envelopes, and dead letters.

Every Kafka message costs a downstream stage tens of microseconds (faust ~130 µs), so producers
pack several records of one instrument per message; but waiting to pack them costs latency. The
rule is adaptive (see :func:`due`): an instrument's records are sent at once when nothing of that
instrument is in flight (no send of it the broker has not acknowledged yet), and gather while a
send is outstanding, to go together when it is acknowledged, or as soon as ``max_records`` are
waiting (the size cap), or ``linger_s`` after the first of them arrived (the time cap,
MDP_PRODUCER_FLUSH_MS). A quiet market therefore pays no flush timer, and a busy one sends one
envelope per instrument per broker round trip instead of one message per record.

Stopping is bounded: once the process is signalled to stop, sends and the wait for the broker's
acknowledgements give up :data:`DRAIN_S` seconds later, and :meth:`Publisher.drain` says in one
line how many records were not delivered (a broker that is away does not hold the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from marketdata.codec import encode_bars, encode_ticks
from marketdata.dlq import HEADER_REASON, HEADER_STAGE
from marketdata.kafka import kafka_errors, translate
from marketdata.records import Bar, Tick
from marketdata.signals import remaining, signalled, stop_deadline
from marketdata.topics import Topics, instrument_key

log = logging.getLogger(__name__)

# After a stop signal: what the venue loop and the drain may still spend on delivery, inside the
# 2 s a producer has to exit (the rest is for stopping the Kafka client and the interpreter).
DRAIN_S = 1.0
# The time cap's default, MDP_PRODUCER_FLUSH_MS's: records never wait longer than this for the
# send ahead of them (a broker round trip is ~5-10 ms, aiokafka's own 5 ms linger included).
LINGER_S = 0.05

_Pending = tuple["asyncio.Future[Any]", int]  # a send's future, and how many records it carries


def due(waiting: int, in_flight: bool, waited_s: float, *, max_records: int,
        linger_s: float) -> int:  # fmt: skip
    """How many of an instrument's ``waiting`` records to send now: all of them when nothing of
    the instrument is in flight or the oldest has waited ``linger_s``; otherwise only whole
    envelopes of ``max_records`` (the rest gathers behind the send in flight)."""
    if not in_flight or waited_s >= linger_s:
        return waiting
    return waiting - waiting % max_records


@dataclass(frozen=True, slots=True)
class Envelope:
    """One Kafka value encoded elsewhere (the dump import builds them a column at a time):
    ``count`` records of the instrument ``key``, for the raw ticks or bars topic."""

    topic: Literal["ticks", "bars"]
    key: bytes
    value: bytes
    count: int


class _Lane:
    """One instrument on one topic: its waiting records and its last send."""

    __slots__ = ("encode", "handing", "inflight", "key", "records", "since", "topic", "watched")

    def __init__(self, topic: str, key: bytes, encode: Callable[[Any], bytes]) -> None:
        self.topic = topic
        self.key = key
        self.encode = encode
        self.records: list[Any] = []
        self.inflight: asyncio.Future[Any] | None = None  # the last send's delivery future
        self.handing = 0  # sends being handed to the producer (no future yet)
        self.since = 0.0  # when the records started gathering
        self.watched: asyncio.Future[Any] | None = None  # the future whose answer wakes them

    def in_flight(self) -> bool:
        return self.handing > 0 or (self.inflight is not None and not self.inflight.done())


class Publisher:
    def __init__(
        self, producer: AIOKafkaProducer, topics: Topics, *, stage: str, max_records: int = 100,
        linger_s: float = LINGER_S, drain_s: float = DRAIN_S,
    ) -> None:  # fmt: skip
        self.producer = producer
        self.drain_s = drain_s
        self.topics = topics
        self.stage = stage
        self.max_records = max_records
        self.linger_s = linger_s
        self._ticks: dict[bytes, _Lane] = {}
        self._bars: dict[bytes, _Lane] = {}
        # Lanes whose records wait behind a send in flight, the longest waiting first (a lane
        # enters at the end when it starts gathering and leaves when its records are sent).
        self._gathering: dict[_Lane, None] = {}
        self._ready: dict[_Lane, None] = {}  # of those, the ones whose send was answered
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._failure: Exception | None = None  # the flusher's, raised to the next caller
        self._handing = asyncio.Lock()  # held while messages are handed to the producer
        self._pending: list[_Pending] = []
        self.sent_records = 0
        self.dead_letters = 0
        # Records that never reached the broker: given up at a stop, or refused by it.
        self.undelivered = 0
        self._refused = 0  # of those, sent (so in sent_records) and then refused by the broker

    async def add(self, records: Iterable[Tick | Bar]) -> None:
        """Buffer ``records``, and send what :func:`due` says is due for each instrument."""
        self._raise_failure()
        touched: dict[_Lane, _Lane] = {}
        ticks, bars, previous = self._ticks, self._bars, None
        for record in records:  # the hot loop of a bulk path: lookups kept local
            key = instrument_key(record.exchange, record.symbol)
            if isinstance(record, Tick):
                lane = ticks.get(key) or self._lane(ticks, self.topics.ticks_raw, key, encode_ticks)
            else:
                lane = bars.get(key) or self._lane(bars, self.topics.bars_raw, key, encode_bars)
            lane.records.append(record)
            if lane is not previous:  # a page of one instrument touches one lane
                touched[lane] = previous = lane
        for lane in touched:
            await self._release(lane)

    async def add_encoded(self, envelope: Envelope) -> None:
        """Send an envelope as it is, after what is buffered for its instrument (so that the
        instrument's records keep their order); its records count as sent like any others."""
        self._raise_failure()
        encode: Callable[[Any], bytes]
        if envelope.topic == "ticks":
            lanes, topic, encode = self._ticks, self.topics.ticks_raw, encode_ticks
        else:
            lanes, topic, encode = self._bars, self.topics.bars_raw, encode_bars
        key = envelope.key
        lane = lanes.get(key) or self._lane(lanes, topic, key, encode)
        if lane.records:
            await self._release(lane, everything=True)
        await self._send_lane(lane, [(envelope.value, envelope.count)])

    async def flush(self, *, wait: bool = False) -> None:
        """Nothing more is coming for now. Without ``wait``: what waits past the time cap is
        sent, and what waits behind a send in flight still goes when that send is answered.
        With ``wait``: everything buffered is sent, and the broker's acknowledgements awaited
        (or, once the process is stopping, until ``drain_s`` after the signal)."""
        self._raise_failure()
        if not wait:
            for lane in list(self._gathering):
                await self._release(lane)
            return
        await self._send_buffered()
        await self._handed()
        if self._pending:
            await self._acknowledged()
            if stop_deadline(self.drain_s) is None:
                self._raise_failures()
        self._raise_failure()

    async def drain(self) -> int:
        """The end of publishing: send what is buffered, wait for the acknowledgements as
        :meth:`flush` does, and log one line; return how many records were not delivered."""
        await self._send_buffered()
        await self._handed()
        if self._pending:
            await self._acknowledged()
        unanswered = sum(n for future, n in self._pending if not _delivered(future))
        lost = self.undelivered + unanswered
        lost += sum(len(lane.records) for lanes in (self._ticks, self._bars)
                    for lane in lanes.values())  # fmt: skip
        # What was handed to the producer and not refused or left unanswered reached the broker.
        delivered = self.sent_records + self.dead_letters - unanswered - self._refused
        if lost:
            log.warning("%s: %d records could not be delivered to Kafka (%d delivered)",
                        self.stage, lost, delivered)  # fmt: skip
        else:
            log.info("%s: 0 records could not be delivered to Kafka (%d delivered)",
                     self.stage, delivered)  # fmt: skip
        return lost

    async def dead(self, raw: bytes, reason: str, origin: str) -> None:
        """A payload that could not be normalised: kept as it came, with the reason."""
        headers = [(HEADER_REASON, reason.encode()), (HEADER_STAGE, self.stage.encode()),
                   ("mdp.origin", origin.encode())]  # fmt: skip
        if (await self._send(self.topics.dlq, None, [(raw, 1)], headers))[1]:
            self.dead_letters += 1

    async def dead_rows(self, rejected: Iterable[tuple[Any, str]], origin: str) -> None:
        """REST rows that did not normalise, each as the JSON it came as, with its reason."""
        for row, reason in rejected:
            await self.dead(json.dumps(row).encode(), reason, origin)

    # The gathering -----------------------------------------------------------------------------

    @staticmethod
    def _lane(
        lanes: dict[bytes, _Lane], topic: str, key: bytes, encode: Callable[[Any], bytes]
    ) -> _Lane:
        lane = lanes[key] = _Lane(topic, key, encode)
        return lane

    async def _release(self, lane: _Lane, *, everything: bool = False) -> None:
        """Send what is due of the lane's records (all of them with ``everything``); the rest
        gathers behind the send in flight."""
        waiting = len(lane.records)
        if not waiting:
            return
        now = time.monotonic()
        if everything:
            count = waiting
        else:
            waited = now - lane.since if lane in self._gathering else 0.0
            count = due(waiting, lane.in_flight(), waited, max_records=self.max_records,
                        linger_s=self.linger_s)  # fmt: skip
        if count == waiting:
            group, lane.records = lane.records, []
            self._gathering.pop(lane, None)
            self._ready.pop(lane, None)
        else:
            group, lane.records = lane.records[:count], lane.records[count:]
            self._gather(lane, now)
        step = self.max_records
        chunks = [group[start : start + step] for start in range(0, count, step)]
        await self._send_lane(lane, [(lane.encode(chunk), len(chunk)) for chunk in chunks])

    async def _send_lane(self, lane: _Lane, messages: list[tuple[bytes, int]]) -> None:
        """Send the lane's messages in one hand-over (nothing of the lane can come between)."""
        lane.handing += 1
        try:
            future, handed = await self._send(lane.topic, lane.key, messages)
        finally:
            lane.handing -= 1
        self.sent_records += handed
        if future is not None:
            lane.inflight = future
        if lane.records:
            self._watch(lane)

    def _gather(self, lane: _Lane, now: float) -> None:
        if lane not in self._gathering:
            lane.since = now
            self._gathering[lane] = None
        self._watch(lane)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_gathered(), name="publisher-flush")

    def _watch(self, lane: _Lane) -> None:
        """Wake the flusher for the lane when its last send is answered."""
        future = lane.inflight
        if future is not None and future is not lane.watched:
            lane.watched = future
            future.add_done_callback(functools.partial(self._answered, lane))

    def _answered(self, lane: _Lane, _: asyncio.Future[Any]) -> None:
        if lane in self._gathering:
            self._ready[lane] = None
            self._wake.set()

    async def _flush_gathered(self) -> None:
        """The flusher: sends gathered records when the send ahead of them is answered or at
        the time cap; runs while anything gathers."""
        try:
            while self._gathering:
                ready, self._ready = self._ready, {}
                for lane in ready:
                    await self._release(lane)
                now = time.monotonic()
                while self._gathering:
                    oldest = next(iter(self._gathering))
                    if now - oldest.since < self.linger_s:
                        break
                    await self._release(oldest, everything=True)
                if not self._gathering or self._ready:
                    continue
                wait_s = next(iter(self._gathering)).since + self.linger_s - time.monotonic()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(wait_s, 0.0))
        except Exception as exc:  # raised to whoever publishes next, not lost in a task
            self._failure = exc
        finally:
            self._flusher = None

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def _send_buffered(self) -> None:
        for lanes in (self._ticks, self._bars):
            for lane in list(lanes.values()):
                if lane.records:
                    await self._release(lane, everything=True)

    async def _handed(self) -> None:
        """Until the sends already decided (the flusher's too) are handed to the producer, so
        that their futures are pending."""
        barrier = asyncio.ensure_future(self._barrier())  # queued after them: the lock is FIFO
        await asyncio.wait({barrier}, timeout=remaining(stop_deadline(self.drain_s)))
        barrier.cancel()
        self._wake.set()  # a flusher with nothing left to gather ends

    async def _barrier(self) -> None:
        async with self._handing:
            pass

    # The producer ------------------------------------------------------------------------------

    async def _send(
        self, topic: str, key: bytes | None, messages: list[tuple[bytes, int]],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> tuple[asyncio.Future[Any] | None, int]:  # fmt: skip
        """Hand messages (values and their record counts) to the producer, in order and with
        nothing else between them; the last one's delivery future (None when none was handed)
        and how many records were handed. Once stopping, what is not handed by the deadline is
        given up and counted."""
        handed: list[tuple[asyncio.Future[Any], int]] = []
        handing = self._hand(topic, key, messages, headers, handed)
        deadline = stop_deadline(self.drain_s)
        try:
            async with kafka_errors():
                if deadline is None:
                    await handing
                else:
                    # A broker that is away blocks a send (metadata, a full buffer) for minutes.
                    await asyncio.wait_for(handing, remaining(deadline))
        except TimeoutError:
            pass
        except BaseException:
            self.undelivered += sum(n for _, n in messages[len(handed) :])
            raise
        finally:
            self._pending.extend(handed)
        self.undelivered += sum(n for _, n in messages[len(handed) :])
        if len(self._pending) > 10_000:
            # Acknowledged sends need no tracking, but a failed one must not pass unseen.
            self._raise_failures()
        return (handed[-1][0] if handed else None), sum(n for _, n in handed)

    async def _hand(
        self, topic: str, key: bytes | None, messages: list[tuple[bytes, int]],
        headers: list[tuple[str, bytes]] | None, handed: list[tuple[asyncio.Future[Any], int]],
    ) -> None:  # fmt: skip
        # Sends from the caller and from the flusher queue here in the order they were decided
        # (nothing awaits before the lock), so an instrument's records keep their order.
        async with self._handing:
            for value, count in messages:
                future = await self.producer.send(topic, value, key=key, headers=headers)
                handed.append((future, count))

    async def _acknowledged(self) -> None:
        """Wait until every pending send is answered, or ``drain_s`` after a stop signal."""
        # Never cancelled: that would cancel the sends themselves.
        answered = asyncio.gather(*(future for future, _ in self._pending), return_exceptions=True)
        if stop_deadline(self.drain_s) is None:
            stopping = asyncio.ensure_future(signalled())
            either: set[asyncio.Future[Any]] = {answered, stopping}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
        if not answered.done():
            await asyncio.wait({answered}, timeout=remaining(stop_deadline(self.drain_s)))

    def _raise_failures(self) -> None:
        """Forget the acknowledged sends; raise the first failed one's error."""
        failed = [(future, n) for future, n in self._pending
                  if future.done() and not _delivered(future)]  # fmt: skip
        self._pending = [(future, n) for future, n in self._pending if not future.done()]
        if failed:
            self.undelivered += sum(n for _, n in failed)
            self._refused += sum(n for _, n in failed)
            error = failed[0][0].exception()
            if isinstance(error, KafkaError):
                raise translate(error) from error
            raise error or RuntimeError("a send failed without an error")


def _delivered(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None

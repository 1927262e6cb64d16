"""Getting accepted alerts to Kafka: directly when it answers, through the spool when not.

An alert is acknowledged (202) once it is durable: acknowledged by Kafka within the deadline, or
else fsynced to the spool. While the spool holds anything, new alerts join it behind the older
ones, and a keeper task replays it in order once Kafka answers, also after a restart. Delivery
is at least once: a send that timed out may still have been written by the broker, and the
spooled copy then arrives as well (same alert, same id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from marketdata.settings import Settings
from webhook.spool import Spool

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "spooled"]
CLOSE_S: Final = 2.0  # at shutdown, how long a producer whose broker hangs may take to stop


class Delivery:
    def __init__(
        self, settings: Settings, spool: Spool,
        producer_factory: Callable[[Settings], AIOKafkaProducer],
    ) -> None:  # fmt: skip
        self.settings = settings
        self.topic = settings.topics.ticks_raw
        self.spool = spool
        self.producer_factory = producer_factory
        self.producer: AIOKafkaProducer | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self.producer is not None

    async def start(self) -> None:
        self.spool.open()
        if self.spool.depth:
            log.warning("%d spooled alerts from an earlier run to replay", self.spool.depth)
        await self._connect()
        self._keeper = asyncio.create_task(self._keep(), name="webhook-spool-keeper")

    async def aclose(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self._drop_producer()
        if self._stopping:
            # A broker that hangs must not hold the process past a supervisor's SIGTERM grace:
            # what it has not acknowledged is in the spool already.
            _, hanging = await asyncio.wait(self._stopping, timeout=CLOSE_S)
            for task in hanging:
                task.cancel()
        if self.spool.depth:
            log.warning("%d alerts not yet in Kafka stay in the spool; they are sent first on the"
                        " next start", self.spool.depth)  # fmt: skip
        self.spool.close()

    async def _drop_producer(self) -> None:
        """Let go of a producer whose broker is away; the keeper connects a new one later.
        Its unacknowledged sends have expired (or are spooled), so stopping may be cut short;
        it runs in the background, off the request's 3-second budget."""
        producer, self.producer = self.producer, None
        if producer is not None:
            task = asyncio.create_task(self._stop(producer))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    @staticmethod
    async def _stop(producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5)

    async def publish(self, key: bytes, value: bytes) -> Outcome:
        """Make one alert durable; raise SpoolUnavailable when even the spool cannot take it."""
        if self.producer is not None and not self.spool.depth:
            try:
                await self._send(self.producer, key, value, self.settings.webhook_publish_timeout_s)
                return "accepted"
            except (KafkaError, TimeoutError) as exc:
                log.warning("Kafka did not acknowledge an alert (%s); spooling", type(exc).__name__)
                await self._drop_producer()
        self.spool.append(key, value)
        self._wake.set()
        return "spooled"

    async def _send(
        self, producer: AIOKafkaProducer, key: bytes, value: bytes, deadline_s: float
    ) -> None:
        # The producer fails the send itself before this deadline (see webhook_producer); the
        # deadline is a last bound, and when it does fire the producer is dropped unflushed.
        async with asyncio.timeout(deadline_s + 0.4):
            delivery = await producer.send(self.topic, value, key=key)
            await delivery

    async def _connect(self) -> None:
        producer = self.producer_factory(self.settings)
        try:
            await producer.start()
        except KafkaError as exc:
            log.warning("Kafka not reachable (%s); alerts go to the spool", type(exc).__name__)
            with contextlib.suppress(Exception):
                await producer.stop()
            return
        self.producer = producer

    async def _keep(self) -> None:
        """Connect when disconnected, and replay the spool in order whenever it holds alerts."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            if self.producer is None:
                await self._connect()
            if self.producer is not None and self.spool.depth:
                await self._replay(self.producer)

    async def _replay(self, producer: AIOKafkaProducer) -> None:
        replayed = 0
        for entry in self.spool.pending():
            try:
                # No request waits here: give the producer all the time it needs to say.
                await self._send(producer, entry.key, entry.value, 30.0)
            except (KafkaError, TimeoutError):
                await self._drop_producer()
                return  # Kafka is away still; the keeper tries again
            self.spool.mark_done(entry)
            replayed += 1
        log.info("replayed %d spooled alerts", replayed)

"""The faust app: one agent per raw topic, each deduplicating and batching.

Each agent takes a buffer of messages (``processors.intake.take_adaptive``: as soon as its
input ran dry, at MDP_PROCESS_TAKE_MESSAGES, or at the latest MDP_PROCESS_BATCH_MS after its
first message), hands it to :class:`BatchProcessor`, and sends the batches it returns. The take
acks a buffer as faust-streaming 0.15's ``take_events`` does, in a ``finally``: when the agent
asks for the next one, but also when the agent raised or was cancelled, and faust then restarts
the agent past it.
So no offset may pass a message that was neither forwarded nor dead-lettered: one message's
failure of any kind is its own dead letter (:class:`BatchProcessor`); the next buffer is taken
only once the broker acknowledged every output of this one (faust's flush before a commit
ignores failed deliveries); a buffer that fails anyway (broker away, a bug) keeps a reference on
each of its messages that no ack releases, so none is committed, and the worker exits for its
successor to replay them. The rebuilt dedupe window drops what of a replay was already emitted.
Agents run with ``concurrency=1``: with more, faust may commit past an event still in flight.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from marketdata.dlq import dead_letter_headers, log_dead_letter
from marketdata.kafka import FETCH_MAX_WAIT_MS
from marketdata.settings import Settings
from processors.core import BatchProcessor
from processors.derive import derived_bars
from processors.intake import (
    deliver_inline,
    take_adaptive,
    time_full_collections,
    unread,
    watch_intake,
)
from processors.metrics import ProcessorMetrics
from processors.rebuild import load_window

# How long the consumer thread waits for records of the partitions it is fetching before it
# looks again at which partitions those are (faust: 1 s). See :func:`cap_fetch_wait`.
FETCH_WAIT_S = 0.1


def broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{server}" for server in bootstrap.split(",")]


@dataclass(slots=True)
class InHand:
    """Raw messages taken and not yet acked (in a buffer being handled, or held after a failure):
    what a worker that exits now leaves to its successor."""

    messages: int = 0


def faust_datadir(settings: Settings) -> Path:
    """Where faust keeps its files: under MDP_STATE_DIR, not faust's default ``<group>-data``
    in whatever directory the worker was started from."""
    return settings.state_dir / "faust" / settings.process_group


def create_app(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    on_failure: Callable[[BaseException], None] = lambda _: None,
    in_hand: InHand | None = None,
) -> faust.App:
    """The app; ``on_failure`` hears of a buffer that could not be processed or delivered, whose
    messages are then never committed (the worker exits, and its successor replays them)."""
    held = in_hand if in_hand is not None else InHand()
    metrics = ProcessorMetrics(registry or CollectorRegistry())
    app = faust.App(
        settings.process_group,
        broker=broker_urls(settings.kafka_bootstrap),
        store="memory://",
        # faust expands {conf...} in this path: braces of ours are literal.
        datadir=str(faust_datadir(settings)).replace("{", "{{").replace("}", "}}"),
        autodiscover=False,
        web_host=settings.metrics_host,
        web_bind=settings.metrics_host,
        web_port=settings.process_web_port,
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        # A dead worker's partitions move after 10 s, not faust's default minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        # What a crashed worker replays: at most this much of its input.
        broker_commit_interval=settings.process_commit_interval_s,
        producer_acks=-1,
        producer_compression_type="zstd",
        producer_linger_ms=5,
        producer_max_batch_size=256 * 1024,
    )
    topics = settings.topics
    # Bars from trades (issue #19), kept apart in derive.py: a pass-through when they are off.
    bars = derived_bars(settings, metrics.registry)
    processor = BatchProcessor(
        topics, max_records=settings.process_batch_records,
        window_keys=settings.dedupe_window_keys, window_s=settings.dedupe_window_s,
        decode=bars.decode,
    )  # fmt: skip

    def raw(name: str) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw")  # fmt: skip

    outputs = {name: raw(name) for name in topics.all() if name != topics.ticks_raw}

    async def handle(events: Sequence[faust.EventT[Any]]) -> None:
        messages = [event.message for event in events]
        await _load_windows(app, settings, processor, metrics, messages)
        result = await bars.process(processor, messages)
        sent: list[Awaitable[Any]] = []
        for output in result.outputs:
            sent.append(await outputs[output.topic].send(key=output.key, value=output.value))
        for message, reason in result.dead:
            log_dead_letter(message, reason)
            sent.append(await outputs[topics.dlq].send(
                key=message.key, value=message.value,
                headers=dead_letter_headers(message, reason, "processor"),
            ))  # fmt: skip
        # faust flushes its producer before a commit but ignores what failed to be delivered:
        # only a buffer whose every output the broker acknowledged may be acked.
        await asyncio.gather(*sent)
        metrics.messages_in.labels(messages[0].topic).inc(len(messages))
        metrics.records_in.inc(result.records_in)
        metrics.records_out.labels("tick").inc(result.ticks_out)
        metrics.records_out.labels("bar").inc(result.bars_out)
        metrics.duplicates.inc(result.duplicates)
        metrics.batches.inc(len(result.outputs))
        metrics.dead_letters.inc(len(result.dead))

    queues: dict[str, Any] = {}  # each agent's channel queue, for the stall watch

    async def agent(stream: faust.StreamT[Any]) -> AsyncIterator[None]:
        queues[str(stream.channel)] = cast(faust.ChannelT[Any], stream.channel).queue
        cap_s = settings.process_batch_ms / 1000
        async for events in take_adaptive(stream, settings.process_take_messages, cap_s):
            held.messages += len(events)
            metrics.buffer_messages.observe(len(events))
            try:
                await handle(events)
                held.messages -= len(events)
            except BaseException as exc:
                # The take acks its buffer in a `finally`, however its consumer ended, and
                # faust restarts a crashed agent past it: one more reference on each message
                # keeps every offset of this buffer from ever becoming committable.
                for event in events:
                    event.message.incref()
                if not isinstance(exc, asyncio.CancelledError):
                    on_failure(exc)
                raise
            yield None

    for name in (topics.ticks_raw, topics.bars_raw):
        app.agent(raw(name), name=f"process-{name}", concurrency=1)(agent)

    @app.on_partitions_revoked.connect
    async def forget(_: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0] if args else set()
        processor.forget(tp.partition for tp in revoked if tp.topic == topics.ticks_raw)
        bars.forget(tp.partition for tp in revoked if tp.topic == topics.ticks_raw)

    bars.install_timer(app, outputs, on_failure)
    cap_fetch_wait(app.consumer, FETCH_WAIT_S)
    deliver_inline(app.consumer)
    _watch_stalls(app, metrics, held, queues)

    _serve_pages(app, metrics)
    return app


async def _load_windows(
    app: faust.App, settings: Settings, processor: BatchProcessor, metrics: ProcessorMetrics,
    messages: Sequence[Any],
) -> None:  # fmt: skip
    """The dedupe windows of the raw tick partitions in ``messages`` not loaded yet."""
    missing = {m.partition for m in messages if m.topic == settings.topics.ticks_raw}
    missing -= processor.windows.keys()
    if missing:
        # Every assigned partition's window at once, each read back by a consumer of its
        # own (~0.5 s to start): one at a time, as each partition's first message came,
        # the adaptive intake's small first buffers paid that wait once per partition.
        assigned = {tp.partition for tp in app.consumer.assignment()
                    if tp.topic == settings.topics.ticks_raw}  # fmt: skip
        missing |= assigned - processor.windows.keys()
        loaded = await asyncio.gather(*(
            load_window(settings, partition, processor.window(partition))
            for partition in sorted(missing)
        ))  # fmt: skip
        metrics.window_loads.inc(sum(loaded))


def cap_fetch_wait(consumer: Any, wait_s: float) -> None:
    """Bound how long one fetch waits for records, on both sides of the consumer thread: the
    causes of the intake stalls of issue #20.

    In the worker: when an agent's channel queue reaches ``stream_buffer_maxsize / 1.25``
    events, faust's conductor takes the partition out of the consumer's active set (flow
    control, counted by ``mdp_process_intake_paused``), and puts it back once the agent drained
    the queue to 40 %. But the consumer thread is by then waiting in ``fetched_records`` for
    records of the partitions that were active when the wait began, up to the 1 s faust's fetch
    loop asks for; when none of those has input (a quiet ``md.bars.raw``), the resumed
    partition's records wait for that timeout while the agent sits idle. A short wait makes the
    consumer look at its active set again soon after a resume.

    At the broker: aiokafka keeps one fetch request in flight per broker, and leaves out of it
    the partitions whose records it still holds unread. Once the agent has read those, their
    next fetch waits until the request in flight returns, which the broker holds until data
    comes for the partitions it names, or ``fetch_max_wait_ms``: faust hard-codes 1,500 ms. A
    request that named only quiet partitions (``md.bars.raw``, or ticks partitions just read
    out) thus held back every busy one: measured at 5k ticks/s, the agent took nothing for
    0.5-1.5 s at a time with thousands of messages waiting, after every catch-up. The worker's
    consumer is made with :data:`marketdata.kafka.FETCH_MAX_WAIT_MS` instead (what an empty
    fetch then costs: a request per that many milliseconds while the topics are quiet).
    """
    getmany = consumer._getmany

    async def capped(active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109 faust's
        return await getmany(active_partitions, min(timeout, wait_s))

    consumer._getmany = capped
    thread = consumer._thread
    create = thread._create_worker_consumer

    def created(transport: Any) -> Any:
        client = create(transport)
        client._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the client starts its fetcher
        return client

    thread._create_worker_consumer = created


def _serve_pages(app: faust.App, metrics: ProcessorMetrics) -> None:
    @app.page("/metrics")
    async def serve_metrics(view: View, request: Request) -> Response:
        # aiohttp wants the charset apart from the content type.
        content_type = CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
        return view.bytes(generate_latest(metrics.registry), content_type=content_type)

    @app.page("/health")
    async def serve_health(view: View, request: Request) -> Response:
        ready = app.rebalancing is False and app.consumer is not None
        return view.text("ready\n" if ready else "not ready\n", status=200 if ready else 503)


def _watch_stalls(
    app: faust.App, metrics: ProcessorMetrics, held: InHand, queues: dict[str, Any]
) -> None:
    """The intake-stall metrics (issue #20): loop lag, idle with a backlog, flow-control
    pauses, full garbage collections."""

    def idle() -> bool:
        return not held.messages and not any(q.qsize() for q in queues.values())

    async def watch() -> None:
        # Installed while the worker runs, not when the app is built (tests build many).
        on_gc = time_full_collections(metrics.gc_pauses)
        # What the worker built to start (modules, faust's services, the app: ~hundreds of
        # thousands of objects) lives as long as the worker: out of every later collection,
        # which otherwise walks all of it each time and, on a loaded machine, held the event
        # loop for half a second and more (issue #20's intake stalls).
        gc.collect()
        gc.freeze()
        try:
            await watch_intake(metrics, idle, lambda: unread(app.consumer))
        finally:
            gc.callbacks.remove(on_gc)

    app.task(watch)
    app.sensors.add(_PausedSensor(metrics))


class _PausedSensor(faust.Sensor):
    """Counts faust's flow-control pauses: a partition no longer fetched because its stream
    queue neared ``stream_buffer_maxsize`` (the conductor's ``on_pressure_high``)."""

    def __init__(self, metrics: ProcessorMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def on_topic_buffer_full(self, tp: Any) -> None:
        self.metrics.intake_paused.inc()

"""Adaptive intake: a buffer goes to the agent as soon as its input has run dry.

faust's ``Stream.take_events(max_, within)`` hands out a buffer when it holds ``max_`` events
or when ``within`` has passed, so a lone message waits the whole window even when nothing more
is coming, and after each buffer the next one waits a full window again. :func:`take_adaptive`
hands a buffer out as soon as nothing more is waiting in the stream's channel queue (the queue
faust's conductor puts each consumed message's event into), when it reaches ``max_events``, or
at the latest ``cap_s`` after its first event: the cap is reached only under sustained load,
when the queue never runs dry. Under load, buffers grow by themselves: events queue up while the
agent handles the previous buffer.

Acking is take_events' own, and so is the way events reach the buffer (the same faust internals
used the same way), because the ack rules of ``processors.app`` rely on exactly that:

* the stream's acks are off while taking (``enable_acks = False``): its passive drainer does not
  ack an event when it moves to the next one; this generator acks a buffer's events itself,
  in a ``finally`` once the consumer of the buffer asks for the next one, or raised, or was
  cancelled (then ``processors.app`` has put one more reference on each message first);
* no event joins a buffer after it was handed out: the processor that fills the buffer waits
  on a future set before the buffer is yielded and resolved only after its events were acked
  and the buffer cleared, so an event arriving meanwhile goes to the next buffer;
* a full buffer holds the drainer until it was consumed, so no buffer exceeds ``max_events``.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Protocol, cast

import faust
from faust.types import ChannelT, EventT
from mode.services import WaitResults
from mode.utils.futures import notify
from prometheus_client import Counter, Histogram

log = logging.getLogger(__name__)


class Take(enum.Enum):
    """What to do with the buffer after an event joined it."""

    WAIT = "wait"  # more is already waiting in the queue: take it first
    HAND_OUT = "hand out"  # the input ran dry: hand the buffer out now
    FULL = "full"  # hand it out, and add nothing until it was consumed


@dataclass(slots=True)
class Batching:
    """The decision, apart from faust so that it can be tested alone: when a buffer is handed
    out. ``first_at`` is when the buffer's first event joined it (monotonic seconds)."""

    max_events: int
    cap_s: float
    first_at: float | None = None

    def added(self, size: int, input_dry: bool, now: float) -> Take:
        """An event joined the buffer, which now holds ``size``; ``input_dry``: nothing more is
        waiting in the queue."""
        if self.first_at is None:
            self.first_at = now
        if size >= self.max_events:
            return Take.FULL
        return Take.HAND_OUT if input_dry else Take.WAIT

    def remaining(self, now: float) -> float | None:
        """Seconds until the buffer must be handed out even though more keeps arriving; None
        while it is empty (then nothing is due)."""
        if self.first_at is None:
            return None
        return max(0.0, self.first_at + self.cap_s - now)

    def handed_out(self) -> None:
        self.first_at = None


def channel_queue_empty(stream: faust.StreamT[Any]) -> Callable[[], bool]:
    """The emptiness test of the queue the conductor delivers this stream's events into:
    ``app.stream`` wraps the agent's topic in ``aiter()``, an iterator clone whose
    ``ThrowableQueue`` is registered with the conductor; its ``empty()`` is also False while
    an error waits to be raised to the stream."""
    channel = stream.channel
    if not isinstance(channel, ChannelT):
        raise TypeError(f"an adaptive take needs a channel, not {type(channel).__name__}")
    return channel.queue.empty


def take_adaptive(
    stream: faust.StreamT[Any],
    max_events: int,
    cap_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[list[EventT[Any]]]:
    """Buffers of the stream's events (see the module docstring), each acked once the caller
    asks for the next buffer, raises or is cancelled."""
    s = cast(faust.Stream[Any], stream)
    taking = _Taker(s, Batching(max_events, cap_s), clock).buffers()
    # As faust registers take_events' generators: the stream's stop closes one left behind,
    # which runs its ``finally`` (acks, processor removed) on any interpreter.
    s._active_agens.add(taking)
    return taking


class _Taker:
    def __init__(
        self, stream: faust.Stream[Any], batching: Batching, clock: Callable[[], float]
    ) -> None:
        self.stream = stream
        self.batching = batching
        self.clock = clock
        self.dry = channel_queue_empty(stream)
        self.events: list[EventT[Any]] = []
        self.ready = asyncio.Event()  # hand the buffer out now (the input ran dry, or it is full)
        self.arrived = asyncio.Event()  # the buffer holds at least one event
        self.consumed = asyncio.Event()  # a full buffer was handed out and its events acked
        # Set from handing a buffer out until its events were acked: the drainer holds the
        # next event back meanwhile (take_events' ``buffer_consuming``).
        self.handing: asyncio.Future[None] | None = None

    async def add(self, value: Any) -> Any:
        """A stream processor, as in take_events: faust's passive drainer calls it for each
        event, with ``current_event`` set to that event."""
        s = self.stream
        try:
            if self.handing is not None:
                try:
                    await self.handing
                finally:
                    self.handing = None
            event = s.current_event
            if event is None:
                raise RuntimeError("adaptive take found current_event is None")
            self.events.append(event)
            self.arrived.set()
            take = self.batching.added(len(self.events), self.dry(), self.clock())
            if take is not Take.WAIT:
                self.ready.set()
            if take is Take.FULL:
                # As take_events: nothing more joins until this buffer was consumed.
                self.consumed.clear()
                await s.wait(self.consumed)  # type: ignore[arg-type]  # has an awaitable .wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            s.log.exception("Error adding to the adaptive take buffer: %r", exc)
            await s.crash(exc)
        return value

    async def buffers(self) -> AsyncGenerator[list[EventT[Any]], None]:
        s = self.stream
        restore_acks = s.enable_acks
        s.enable_acks = False
        s.add_processor(self.add)
        s._enable_passive(cast(ChannelT[Any], aiter(s.channel)))
        try:
            while not s.should_stop:
                if not self.events and await s.wait_for_stopped(self.arrived):  # type: ignore[arg-type]
                    break
                if not self.ready.is_set():
                    # More was waiting when the last event joined: wait for the queue to run
                    # dry or the buffer to fill, but no longer than the cap since its first
                    # event.
                    remaining = self.batching.remaining(self.clock())
                    await s.wait_for_stopped(self.ready, timeout=remaining)  # type: ignore[arg-type]
                if not self.events:  # pragma: no cover - only woken by stopping
                    continue
                self.handing = s.loop.create_future()
                try:
                    yield list(self.events)
                finally:
                    for event in self.events:
                        await s.ack(event)
                    self.events.clear()
                    self.batching.handed_out()
                    self.arrived.clear()
                    self.ready.clear()
                    notify(self.handing)
                    self.consumed.set()
        finally:
            s.enable_acks = restore_acks
            s._processors.remove(self.add)


class Stalls(Protocol):
    """What :func:`watch_intake` reports to (``processors.metrics.ProcessorMetrics``)."""

    @property
    def loop_lag(self) -> Histogram: ...
    @property
    def idle_with_backlog(self) -> Counter: ...


def unread(consumer: Any) -> int:
    """Messages the broker holds beyond what was read, on the partitions read from so far,
    as of the last fetch response (aiokafka's high watermark)."""
    read = consumer._read_offset
    total = 0
    for tp in consumer.assignment():
        offset, highwater = read.get(tp), consumer.highwater(tp)
        if offset is not None and highwater is not None:
            total += max(0, highwater - offset - 1)
    return total


async def watch_intake(
    stalls: Stalls,
    idle: Callable[[], bool],
    backlog: Callable[[], int],
    *,
    period_s: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    report_s: float = 0.5,
) -> None:
    """Until cancelled: how late the event loop wakes a timer (whatever holds the loop, a GC
    pause included, shows here), and how long the agents sat ``idle`` while the broker held a
    ``backlog`` (an intake stall: input waiting, nothing fetched). Either lasting ``report_s``
    or more is logged once it ends, with its length."""
    stalled_since: float | None = None
    while True:
        started = clock()
        await asyncio.sleep(period_s)
        now = clock()
        lag = max(0.0, now - started - period_s)
        stalls.loop_lag.observe(lag)
        if lag >= report_s:
            log.warning("the event loop was held up for %.2f s", lag)
        if idle() and (waiting := backlog()) > 0:
            stalls.idle_with_backlog.inc(now - started)
            if stalled_since is None:
                stalled_since = started
                unread_at_start = waiting
        elif stalled_since is not None:
            if now - stalled_since >= report_s:
                log.warning("intake stalled for %.2f s with %d messages unread",
                            now - stalled_since, unread_at_start)  # fmt: skip
            stalled_since = None


def time_full_collections(
    pauses: Histogram, clock: Callable[[], float] = time.perf_counter, report_s: float = 0.5
) -> Callable[[str, dict[str, int]], None]:
    """A ``gc.callbacks`` entry timing each collection of the oldest generation (the one that
    walks every tracked object, so the one that can hold the loop for long); one lasting
    ``report_s`` or more is logged. Returns the callback, for ``gc.callbacks.remove``."""
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:  # the oldest of CPython's three
            return
        if phase == "start":
            started[:] = [clock()]
        elif started:
            took = clock() - started.pop()
            pauses.observe(took)
            if took >= report_s:
                log.warning("a full garbage collection held the process for %.2f s (%d "
                            "objects collected)", took, info.get("collected", 0))  # fmt: skip

    gc.callbacks.append(on_gc)
    return on_gc


def deliver_inline(consumer: Any) -> None:
    """Hand each fetched message to the conductor without four tasks per message.

    faust's fetch loop (``Consumer._drain_messages``) delivers every message as
    ``await self.wait_first(callback(message), self.suspend_flow.wait())``: mode's
    ``wait_first`` wraps both coroutines, and the service's stopped and crashed events, in a
    task each, waits for the first, and cancels the other three, which run once more to end.
    That was most of faust's cost per message (issue #20: 126-147 µs a message against a plain
    aiokafka loop's 16-18): at 5k one-tick messages a second the processor fell seconds behind.

    The callback (the conductor's ``on_message``: look up the partition's channels, put the
    event in their queues) finishes without suspending unless a queue is full. So it is first
    run inline, as far as it goes: finished, its result is what ``wait_first`` would have
    returned, with no task made (the unstarted ``suspend_flow.wait()`` is closed). Only when it
    suspends (a full queue) does it go, from where it stopped, through faust's own
    ``wait_first``, so that a rebalance suspending the flow, or the service stopping, still
    ends the wait as before. Calls of any other shape go to ``wait_first`` unchanged.
    """
    wait_first = consumer.wait_first
    stopped, crashed = consumer._stopped, consumer._crashed

    async def waiting(*coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109 mode's
        if (
            timeout is not None
            or len(coros) != 2
            or not asyncio.iscoroutine(coros[0])
            or stopped.is_set()
            or crashed.is_set()
        ):
            results: WaitResults = await wait_first(*coros, timeout=timeout)
            return results
        first, other = coros
        try:
            yielded = first.send(None)
        except StopIteration as finished:
            _close(other)
            return WaitResults([first], [finished.value], False)
        except BaseException:
            _close(other)
            raise
        resumed: WaitResults = await wait_first(_Resumed(first, yielded), other, timeout=timeout)
        return resumed

    consumer.wait_first = waiting


def _close(coro: Any) -> None:
    if asyncio.iscoroutine(coro):
        coro.close()  # never started: closing it is all it needs (no "never awaited" warning)


class _Resumed:
    """A coroutine already run up to its first suspension, awaitable from there: it yields
    what the coroutine yielded (the future it waits on), then passes on what the task running
    it sends or throws, as ``await`` would have done from the start."""

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, or a future's error, thrown in
                try:
                    value = coro.throw(exc)
                except StopIteration as finished:
                    return finished.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as finished:
                    return finished.value

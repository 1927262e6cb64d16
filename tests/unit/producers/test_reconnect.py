"""The one reconnect loop, driven by a scripted venue (pure logic: no network)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from marketdata.errors import MarketDataError, TransientError
from producers.feed import LiveStats
from producers.reconnect import Ended, ReconnectLoop, Timing

FAST = Timing(watchdog_s=0.4, initial_backoff_s=0.01, max_backoff_s=0.05, stable_s=0.2)


@dataclass
class Script:
    """A venue whose hooks do what the test says and log what the loop asked."""

    opens: list[Callable[[], object]] = field(default_factory=list)  # one per open; then fine
    serves: list[Ended | Exception | None] = field(default_factory=list)  # None: serve till told
    probe_answers: bool = False
    fail_gap: int = 0  # how many fill_gap calls raise a lost connection
    speak_every: float | None = 0.05  # the venue's messages (heartbeats) while serving
    calls: list[tuple[str, object]] = field(default_factory=list)
    stats: LiveStats = field(
        default_factory=lambda: LiveStats.of("test", ["AAA", "BBB"], watchdog_s=0.4)
    )
    numbers: int = 0

    async def open(self) -> int:
        if self.opens:
            outcome = self.opens.pop(0)()
            if isinstance(outcome, Exception):
                raise outcome
            if asyncio.iscoroutine(outcome):
                await outcome
        self.numbers += 1
        self.calls.append(("open", self.numbers))
        return self.numbers

    async def serve(self, session: int, until: asyncio.Event) -> Ended:
        self.calls.append(("serve", session))
        script = self.serves.pop(0) if self.serves else None
        if isinstance(script, Exception):
            raise script
        if isinstance(script, Ended):
            await asyncio.sleep(0.01)
            self.stats.heard()
            return script
        while not until.is_set():
            if self.speak_every is not None:
                self.stats.heard()
            await asyncio.sleep(self.speak_every or 0.02)
        return Ended("stopped")

    async def probe(self, session: int) -> bool:
        self.calls.append(("probe", session))
        return self.probe_answers

    async def resubscribe(self, session: int) -> None:
        self.calls.append(("resubscribe", session))

    async def fill_gap(self, session: int, since: datetime) -> None:
        self.calls.append(("fill_gap", since))
        if self.fail_gap:
            self.fail_gap -= 1
            raise TransientError("connection lost while fetching history")

    async def close(self, session: int) -> None:
        self.calls.append(("close", session))

    async def finish(self) -> None:
        self.calls.append(("finish", None))

    def called(self, name: str) -> list[object]:
        return [arg for what, arg in self.calls if what == name]


async def until(done: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110 - the state polled is plain attributes
            await asyncio.sleep(0.01)


async def run_until(
    venue: Script, done: Callable[[], bool], timing: Timing = FAST
) -> ReconnectLoop[int]:
    loop = ReconnectLoop(venue, timing)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await until(done)
    stop.set()
    await asyncio.wait_for(task, 2)
    return loop


async def test_connect_failures_are_retried_with_growing_delays_then_it_serves() -> None:
    venue = Script(opens=[lambda: OSError("refused"), TimeoutError, lambda: None])
    loop = await run_until(venue, lambda: bool(venue.called("serve")))
    assert venue.called("open") == [1]
    assert venue.stats.connections == 1
    assert loop.backoff.attempts == 2  # two failed connects, no reset since
    assert venue.stats.last_error == "TimeoutError"
    assert venue.called("close") == [1]  # closed at the stop
    assert venue.calls[-1] == ("finish", None)


async def test_stop_ends_a_long_backoff_wait_at_once() -> None:
    venue = Script(opens=[lambda: OSError("refused")] * 5)
    timing = Timing(watchdog_s=1, initial_backoff_s=60, max_backoff_s=60)
    loop = ReconnectLoop(venue, timing)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.1)  # in the first backoff wait (30 to 60 s)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, 1)
    assert time.monotonic() - started < 0.5
    assert venue.called("serve") == []
    assert venue.calls[-1] == ("finish", None)


async def test_stop_cancels_an_open_that_hangs() -> None:
    venue = Script(opens=[lambda: asyncio.sleep(60)])
    loop = ReconnectLoop(venue, Timing(watchdog_s=30))
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert venue.called("open") == []
    assert venue.stats.connected is False


async def test_an_open_longer_than_the_watchdog_fails_and_is_retried() -> None:
    venue = Script(opens=[lambda: asyncio.sleep(60)])
    await run_until(venue, lambda: bool(venue.called("serve")))
    assert venue.stats.connections == 1
    assert venue.stats.last_error == "TimeoutError"


async def test_a_refusal_that_is_not_retriable_ends_the_run_with_it() -> None:
    refused = MarketDataError("no instrument could be subscribed")
    assert not refused.retriable
    venue = Script(opens=[lambda: refused])
    with pytest.raises(MarketDataError, match="no instrument"):
        await asyncio.wait_for(ReconnectLoop(venue, FAST).run(asyncio.Event()), 2)
    assert venue.calls == [("finish", None)]


async def test_a_bug_in_a_hook_is_not_taken_for_a_lost_connection() -> None:
    venue = Script(serves=[ValueError("a bug")])
    with pytest.raises(ValueError, match="a bug"):
        await asyncio.wait_for(ReconnectLoop(venue, FAST).run(asyncio.Event()), 2)
    assert venue.called("close") == [1]
    assert venue.calls[-1] == ("finish", None)


async def test_a_lost_session_is_counted_per_instrument_and_its_gap_filled_after_reconnecting() -> (
    None
):
    venue = Script(serves=[Ended("lost", "closed by the venue")])
    before = datetime.now(UTC)
    loop = await run_until(venue, lambda: len(venue.called("serve")) == 2)
    assert venue.called("open") == [1, 2]
    assert venue.called("close")[0] == 1  # the lost one, closed before the next open
    [since] = venue.called("fill_gap")
    assert isinstance(since, datetime)
    assert before <= since <= datetime.now(UTC)
    assert [name for name, _ in venue.calls][:6] == [
        "open", "serve", "close", "open", "fill_gap", "serve",
    ]  # fmt: skip
    assert venue.stats.reconnects == 1
    assert {s: i.reconnects for s, i in venue.stats.instruments.items()} == {"AAA": 1, "BBB": 1}
    assert [start for start, _ in venue.stats.gaps] == [since]
    assert venue.stats.last_error == "closed by the venue"
    assert loop.backoff.attempts == 1  # the session was too short to reset the delay


async def test_a_gap_whose_fill_failed_is_filled_from_its_first_moment_by_the_next_session() -> (
    None
):
    venue = Script(serves=[Ended("lost", "one"), Ended("lost", "two")], fail_gap=1)
    await run_until(venue, lambda: len(venue.called("fill_gap")) == 2)
    first, second = venue.called("fill_gap")
    assert first == second  # the gap stayed marked from the first loss
    assert len(venue.stats.gaps) == 1


async def test_the_delay_resets_after_a_session_that_lasted_and_spoke() -> None:
    venue = Script(opens=[lambda: OSError("refused")] * 3)
    venue.serves = [None]  # serve until the test ends it via the watchdog below

    loop = ReconnectLoop(venue, FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await until(lambda: bool(venue.called("serve")))
    assert loop.backoff.attempts == 3
    await asyncio.sleep(FAST.stable_s + 0.1)  # a session that lasted, with heartbeats
    venue.speak_every = None  # now silent: the watchdog ends the session
    await until(lambda: venue.stats.reconnects > 0)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert loop.backoff.attempts == 1  # reset to the first step, then one delay taken
    assert venue.called("probe") == [1]
    assert "silent" in venue.stats.last_error


async def test_a_silent_venue_that_answers_the_probe_keeps_its_session() -> None:
    venue = Script(speak_every=None, probe_answers=True)
    await run_until(venue, lambda: len(venue.called("probe")) >= 2)
    assert venue.called("open") == [1]
    assert venue.stats.reconnects == 0


async def test_rotation_opens_the_new_session_before_closing_the_old_and_leaves_no_gap() -> None:
    venue = Script(serves=[Ended("rotate", "due")])
    loop = await run_until(venue, lambda: len(venue.called("serve")) == 2)
    assert [name for name, _ in venue.calls][:5] == ["open", "serve", "open", "close", "serve"]
    assert venue.called("close")[0] == 1
    assert venue.called("fill_gap") == []
    assert (venue.stats.rotations, venue.stats.reconnects, loop.backoff.attempts) == (1, 0, 0)


async def test_resubscription_renews_on_the_same_session_and_fills_since_the_venue_says() -> None:
    since = datetime.now(UTC) - timedelta(seconds=30)
    venue = Script(serves=[Ended("resubscribe", "1101", since=since)])
    await run_until(venue, lambda: len(venue.called("serve")) == 2)
    assert venue.called("open") == [1]
    assert venue.called("resubscribe") == [1]
    assert venue.called("fill_gap") == [since]
    assert venue.called("serve") == [1, 1]
    assert (venue.stats.resubscribes, venue.stats.reconnects) == (1, 0)


async def test_health_is_connected_and_receiving() -> None:
    venue = Script(speak_every=0.05)
    assert not venue.stats.healthy()  # not connected yet
    seen: list[bool] = []

    def served_a_while() -> bool:
        seen.append(venue.stats.healthy())
        return len(seen) > 20

    await run_until(venue, served_a_while)
    assert seen[-1] is True
    assert not venue.stats.healthy()  # stopped: disconnected


async def test_a_rotation_whose_new_session_fails_makes_the_old_one_lost_with_a_gap() -> None:
    # The old session is not served while the new one is tried: its data since is a gap.
    venue = Script(serves=[Ended("rotate", "due")])
    venue.opens = [lambda: None, lambda: OSError("refused")]
    await run_until(venue, lambda: len(venue.called("serve")) == 2)
    assert [name for name, _ in venue.calls][:6] == [
        "open", "serve", "close", "open", "fill_gap", "serve",
    ]  # fmt: skip
    assert (venue.stats.rotations, venue.stats.reconnects) == (0, 1)
    assert venue.stats.last_error == "rotation failed: refused"

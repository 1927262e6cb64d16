"""The one reconnect loop of every live producer; a venue supplies only hooks (:class:`Venue`).

connect (``open``: connect, log on, subscribe) → serve until the connection is lost, falls silent,
is due for rotation, needs its subscriptions renewed, or the stop event is set → on a loss, back
off, connect again and fill the gap. In detail:

- **Backoff**: capped exponential delays with jitter (:class:`marketdata.backoff.Backoff`), for a
  failed connect as for a lost session; the stop event ends every wait at once.
- **The reset rule**: the delay starts from its first step again when a session that lasted
  ``stable_s`` seconds, and in which the venue said something, is lost; a venue that accepts
  connections and drops them at once is retried ever more slowly, never in a tight loop.
- **Watchdog**: a session whose venue says nothing (heartbeats and pings count) for
  ``watchdog_s`` is asked :meth:`Venue.probe`; unless the venue answers it, the session is
  replaced. An ``open`` taking longer than ``watchdog_s`` failed.
- **Gaps**: a loss marks a gap from the moment the session ended; after the next ``open`` the
  venue is asked to :meth:`Venue.fill_gap` since then. A gap not filled (the connection lost again
  meanwhile) stays marked from its first moment.
- **Rotation** (``Ended("rotate")``): a fresh session is opened before the old one is closed, so
  nothing is missed; no gap, no backoff.
- **Resubscription** (``Ended("resubscribe", since=...)``): the venue's link to its market was
  lost and restored without the connection dropping (IB's 1101): subscriptions are renewed on the
  same session and the gap since ``since`` is filled.
- **Stop**: ``serve`` returns promptly once its ``until`` event is set (it is set by the stop
  event and by the watchdog); ``open``, ``probe`` and ``fill_gap`` are cancelled; ``close`` and
  ``finish`` get a bounded time. A producer so stops within 2 s.

A non-retriable :class:`MarketDataError` from any hook ends the run with that error (a refused
logon, no instrument that can be subscribed); ``OSError``, ``TimeoutError`` and retriable
errors end only the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Generic, Literal, Protocol, TypeVar

from marketdata.backoff import Backoff, wait_or_stop
from marketdata.errors import MarketDataError
from marketdata.stopping import finish_within, until_stopped
from producers.feed import LiveStats

log = logging.getLogger(__name__)

S = TypeVar("S")
CLOSE_S: Final = 0.5  # what closing one session may take at a stop

EndKind = Literal["lost", "rotate", "resubscribe", "stopped"]


@dataclass(frozen=True, slots=True)
class Ended:
    """Why :meth:`Venue.serve` returned."""

    kind: EndKind
    reason: str = ""
    since: datetime | None = None  # when the data stopped, if the venue knows (IB's 1100)


class Venue(Protocol[S]):
    """What a venue supplies to the loop; ``S`` is its session (a connection, a client)."""

    @property
    def stats(self) -> LiveStats:
        """The feed's counts; read-only here, so a venue may keep a subclass of its own."""

    async def open(self) -> S:
        """Connect, log on and subscribe every instrument; raise on failure."""

    async def serve(self, session: S, until: asyncio.Event) -> Ended:
        """Handle the session's messages until it ends, or promptly once ``until`` is set
        (then ``Ended("stopped")``). Calls ``stats.heard()`` for every message."""

    async def probe(self, session: S) -> bool:
        """The venue has been silent for the watchdog's time: whether it still answers."""

    async def resubscribe(self, session: S) -> None:
        """Renew every subscription on a session that stayed connected."""

    async def fill_gap(self, session: S, since: datetime) -> None:
        """Fetch what was missed since ``since``; tell ``stats`` per instrument what was
        filled and what could not be."""

    async def close(self, session: S) -> None:
        """Close the session (it may already be gone)."""

    async def finish(self) -> None:
        """The end of the run: publish what was received and wait for its delivery."""


@dataclass(slots=True)
class Timing:
    watchdog_s: float = 30.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    stable_s: float = 10.0


class ReconnectLoop(Generic[S]):
    def __init__(self, venue: Venue[S], timing: Timing | None = None) -> None:
        self.venue = venue
        self.stats = venue.stats
        self.timing = timing or Timing()
        self.backoff = Backoff(initial=self.timing.initial_backoff_s,
                               maximum=self.timing.max_backoff_s)  # fmt: skip
        self._gap_since: datetime | None = None
        self._opened_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a session until ``stop`` is set, then close it and finish."""
        session: S | None = None
        try:
            while not stop.is_set():
                if session is None:
                    session = await self._open(stop)
                    if session is None:
                        break
                    await self._fill_gap(session, stop)
                    continue
                session = await self._serve(session, stop)
        finally:
            self.stats.connected = False
            if session is not None:
                await self._close(session)
            await finish_within(self.venue.finish(), CLOSE_S * 3)

    async def _open(self, stop: asyncio.Event) -> S | None:
        """A session, connect retried with backoff; None once ``stop`` is set."""
        while not stop.is_set():
            try:
                return await self._attempt(stop)
            except Exception as exc:
                self.stats.last_error = self._retriable(exc)
                await self._back_off(f"cannot connect ({self.stats.last_error})", stop)
        return None

    async def _attempt(self, stop: asyncio.Event) -> S | None:
        """One connect: the session, None when ``stop`` came first; raises why it failed."""
        opened, session = await until_stopped(self._timed(self.venue.open()), stop)
        if not opened or session is None:
            return None
        self._opened_at = time.monotonic()
        self.stats.connections += 1
        self.stats.connected = True
        self.stats.heard()
        return session

    async def _back_off(self, why: str, stop: asyncio.Event) -> None:
        delay = self.backoff.next_delay()
        log.warning("%s: %s; retry in %.1f s", self.stats.venue, why, delay)
        await wait_or_stop(stop, delay)

    async def _serve(self, session: S, stop: asyncio.Event) -> S | None:
        """Serve ``session``; the session to go on with (None: open a new one)."""
        until = asyncio.Event()
        watch = asyncio.create_task(self._watch(session, stop, until))
        try:
            ended = await self.venue.serve(session, until)
        except Exception as exc:
            ended = Ended("lost", self._retriable(exc))
        finally:
            watch.cancel()
        if ended.kind == "stopped" and not stop.is_set():
            ended = Ended("lost", f"silent for more than {self.timing.watchdog_s:.0f} s")
        if ended.kind == "stopped":
            return session
        if ended.kind == "rotate":
            return await self._rotate(session, stop)
        if ended.kind == "resubscribe":
            return await self._resubscribe(session, ended, stop)
        await self._lost(session, ended.reason, stop, since=ended.since)
        return None

    async def _lost(
        self, session: S, reason: str, stop: asyncio.Event, since: datetime | None = None
    ) -> None:
        """The gap starts ``since`` (when the venue says data stopped), else now, or earlier if
        one is still open; the next session waits for the backoff, from its first step again if
        this one lasted and the venue spoke."""
        self._gap_since = self._gap_since or since or datetime.now(UTC)
        self.stats.connected = False
        self.stats.last_error = reason
        self.stats.reconnected()
        await self._close(session)
        spoke = (self.stats.last_heard or 0) > self._opened_at
        if spoke and time.monotonic() - self._opened_at >= self.timing.stable_s:
            self.backoff.reset()
        await self._back_off(f"connection lost ({reason})", stop)

    async def _watch(self, session: S, stop: asyncio.Event, until: asyncio.Event) -> None:
        """Set ``until`` on a stop, or when the venue is silent and does not answer a probe."""
        step = min(1.0, self.timing.watchdog_s / 4)
        while not await wait_or_stop(stop, step):
            if self.stats.silent_for() <= self.timing.watchdog_s:
                continue
            try:
                answered = await asyncio.wait_for(self.venue.probe(session),
                                                  self.timing.watchdog_s)  # fmt: skip
            except (OSError, TimeoutError, MarketDataError):
                answered = False
            if not answered:
                log.warning("%s: silent for %.0f s", self.stats.venue, self.stats.silent_for())
                break
            self.stats.heard()
        until.set()

    async def _rotate(self, old: S, stop: asyncio.Event) -> S | None:
        """The new session first, then the old one closed. Meanwhile the old one is neither
        served nor watched, so a new one that cannot be opened makes the old one lost."""
        try:
            fresh = await self._attempt(stop)
        except Exception as exc:
            await self._lost(old, f"rotation failed: {self._retriable(exc)}", stop)
            return None
        await self._close(old)
        if fresh is not None:
            self.stats.rotations += 1
        return fresh

    async def _resubscribe(self, session: S, ended: Ended, stop: asyncio.Event) -> S | None:
        self._gap_since = self._gap_since or ended.since or datetime.now(UTC)
        self.stats.resubscribes += 1
        try:
            await until_stopped(self.venue.resubscribe(session), stop)
        except Exception as exc:
            log.warning("%s: resubscribing failed (%s)", self.stats.venue, self._retriable(exc))
            await self._close(session)
            return None
        await self._fill_gap(session, stop)
        return session

    async def _fill_gap(self, session: S, stop: asyncio.Event) -> None:
        since = self._gap_since
        if since is None:
            return
        try:
            await until_stopped(self.venue.fill_gap(session, since), stop)
        except Exception as exc:
            # The gap stays marked for the next session.
            log.warning("%s: filling the gap since %s failed (%s)", self.stats.venue,
                        since.isoformat(), self._retriable(exc))  # fmt: skip
            return
        if not stop.is_set():
            self.stats.gaps.append((since, datetime.now(UTC)))
            self._gap_since = None

    async def _close(self, session: S) -> None:
        ended, _ = await finish_within(self.venue.close(session), CLOSE_S)
        if not ended:
            log.info("%s: closing the connection took too long; left", self.stats.venue)

    async def _timed(self, opening: Awaitable[S]) -> S:
        async with asyncio.timeout(self.timing.watchdog_s):
            return await opening

    @staticmethod
    def _retriable(exc: Exception) -> str:
        """The reason a retriable error gives; anything else is raised again."""
        if isinstance(exc, MarketDataError) and not exc.retriable:
            raise exc
        if not isinstance(exc, OSError | TimeoutError | MarketDataError):
            raise exc
        return str(exc) or type(exc).__name__

"""IB's pacing rules for historical data, kept before a request is sent rather than learnt from
error 162 after it.

IB's rules (TWS API, "Historical Data Limitations"): no identical request within 15 seconds; no
six or more requests for the same contract, exchange and tick type within two seconds; no more
than 60 requests in any ten minutes; at most 50 requests open at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Final

# TWS measures on its own clock after the request crossed the socket: keep a little clear.
MARGIN_S: Final = 0.1


@dataclass(frozen=True, slots=True)
class PacingRules:
    identical_s: float = 15.0
    burst_limit: int = 5  # at most this many for one contract and tick type …
    burst_s: float = 2.0  # … within this many seconds
    window_limit: int = 60
    window_s: float = 600.0
    max_open: int = 50


class HistoricalPacer:
    """Waits before each historical request as long as IB's rules require, no longer."""

    def __init__(
        self, rules: PacingRules | None = None, *, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:  # fmt: skip
        self.rules = rules or PacingRules()
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._by_key: dict[Hashable, deque[float]] = {}
        self._identical: dict[Hashable, float] = {}
        self.open = asyncio.Semaphore(self.rules.max_open)
        self.waited_s = 0.0

    def delay(self, identity: Hashable, key: Hashable) -> float:
        """Seconds to wait, from now, before sending request ``identity`` of ``key``
        (contract, exchange, tick type)."""
        now, rules = self._clock(), self.rules
        self._expire(now)
        ready = now
        if (last := self._identical.get(identity)) is not None:
            ready = max(ready, last + rules.identical_s + MARGIN_S)
        recent = self._by_key.get(key, ())
        if len(recent) >= rules.burst_limit:
            ready = max(ready, recent[-rules.burst_limit] + rules.burst_s + MARGIN_S)
        if len(self._sent) >= rules.window_limit:
            ready = max(ready, self._sent[-rules.window_limit] + rules.window_s + MARGIN_S)
        return ready - now

    async def acquire(self, identity: Hashable, key: Hashable) -> float:
        """Wait until the request may go, and count it as sent; returns the seconds waited."""
        waited = 0.0
        while (wait := self.delay(identity, key)) > 0:
            await self._sleep(wait)
            waited += wait
        now = self._clock()
        self._sent.append(now)
        self._by_key.setdefault(key, deque()).append(now)
        self._identical[identity] = now
        self.waited_s += waited
        return waited

    def _expire(self, now: float) -> None:
        rules = self.rules
        while self._sent and self._sent[0] <= now - rules.window_s - MARGIN_S:
            self._sent.popleft()
        for key in list(self._by_key):
            recent = self._by_key[key]
            while recent and recent[0] <= now - rules.burst_s - MARGIN_S:
                recent.popleft()
            if not recent:
                del self._by_key[key]
        stale = [k for k, t in self._identical.items() if t <= now - rules.identical_s - MARGIN_S]
        for identity in stale:
            del self._identical[identity]

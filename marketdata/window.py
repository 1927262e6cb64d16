"""A bounded window of keys already seen: tick keys emitted (processors), bodies taken (webhook).

Producers reconnect and backfill, so the same trade comes again seconds to minutes later. The
window remembers each key for ``max_age_s`` seconds of arrival time, and at most ``max_keys``
keys (oldest forgotten first), so memory stays bounded whatever the input rate.

A tick is remembered by one 64-bit hash of its unique key (:func:`fingerprint`), held in a
set, with a deque of the keys in arrival order and one (time, count) entry per call rather than a
time per key: about 80-90 bytes a key (tracemalloc; the int, the set slot, the deque slot), so
~85 MB for a million keys. Keeping the keys themselves (exact) costs 410 bytes a key as decoded
(238 with the exchange, symbol and source shared, 154 nested by instrument): too much for the
process's memory goal at a full window. Oldest keys leave from the left of the deque in O(1);
a dict scanned from its front (the former design) skips every deleted slot again on each call.

A false duplicate (a new tick whose hash equals a remembered one) drops a valid tick, with a
probability per tick of (keys in the window) / 2**64: 5.4e-14 at a full window of a million keys;
at 50k ticks/s for a year (1.6e12 ticks) about 0.09 expected, one tick in ~12 years at that rate
(one in ~120 at 5k ticks/s). The former 128-bit fingerprint did no better where it matters:
both its words were derived from the same 64-bit string hashes of the key's fields, so two
trades differing only in a trade id whose hashes collide collided in both.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

from marketdata.records import Tick


def fingerprint(tick: Tick) -> int:
    """64 bits standing for the tick's unique key: one hash of its fields.

    The time goes in as POSIX seconds (a float): hashing an aware datetime costs twice as much
    (it builds the UTC value and a timedelta first). Within the records' years [1970, 2100) the
    float is exact enough to tell any two microseconds apart (its spacing there is below 0.5 µs,
    and ``timestamp()`` rounds microseconds / 1e6 once), so equal keys give equal inputs and
    different times different ones.

    Python's hash is seeded per process, which is all a window needs: it is filled and read by
    one process, and rebuilt from the output topic after a restart.
    """
    return hash(
        (tick.exchange, tick.symbol, tick.timestamp.timestamp(), tick.source, tick.trade_id)
    )


class SeenWindow:
    def __init__(
        self, max_keys: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self.max_age_s = max_age_s
        self.clock = clock
        self._seen: set[Hashable] = set()
        self._order: deque[Hashable] = deque()  # every key added, oldest first
        self._ages: deque[list[float]] = deque()  # [time, keys of _order added then], oldest first
        # Keys forgotten while their entry is still in _order: that entry must not remove the
        # key should it be added again meanwhile (its later entry is the one that counts).
        self._stale: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._seen

    def admit(self, ticks: list[Tick]) -> list[Tick]:
        """The ticks whose keys are new (each once), remembering them; duplicates are dropped."""
        now = self.clock()
        seen = self._seen
        add, append = seen.add, self._order.append
        fresh = []
        for tick in ticks:
            # fingerprint(), inlined: this runs for every tick the processors read.
            key = hash(
                (tick.exchange, tick.symbol, tick.timestamp.timestamp(), tick.source, tick.trade_id)
            )
            if key not in seen:
                add(key)
                append(key)
                fresh.append(tick)
        self._added(now, len(fresh))
        return fresh

    def seen_before(self, key: Hashable) -> bool:
        """Remember one key; True when it was already remembered (a replay)."""
        if key in self._seen:
            return True
        self._seen.add(key)
        self._order.append(key)
        self._added(self.clock(), 1)
        return False

    def forget(self, key: Hashable) -> None:
        if key in self._seen:
            self._seen.remove(key)
            self._stale[key] = self._stale.get(key, 0) + 1

    def remember(self, ticks: list[Tick]) -> None:
        """Add keys already emitted (when rebuilding from the output topic)."""
        self.admit(ticks)

    def _added(self, now: float, count: int) -> None:
        ages = self._ages
        if count:
            if ages and ages[-1][0] == now:
                ages[-1][1] += count
            else:
                ages.append([now, count])
        self._expire(now)

    def _expire(self, now: float) -> None:
        """Forget the oldest keys beyond ``max_keys``, and every key older than ``max_age_s``."""
        ages, order, seen, stale = self._ages, self._order, self._seen, self._stale
        excess = len(order) - self.max_keys
        horizon = now - self.max_age_s
        while ages:
            group = ages[0]
            if group[0] < horizon:
                drop = int(group[1])
            elif excess > 0:
                drop = min(excess, int(group[1]))
            else:
                break
            for _ in range(drop):
                key = order.popleft()
                if stale and key in stale:
                    if stale[key] == 1:
                        del stale[key]
                    else:
                        stale[key] -= 1
                else:
                    seen.discard(key)
            excess -= drop
            group[1] -= drop
            if not group[1]:
                ages.popleft()

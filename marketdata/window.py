"""A bounded window of keys already seen: tick keys emitted (processors), bodies taken (webhook).

Producers reconnect and backfill, so the same trade comes again seconds to minutes later. The
window remembers each key for ``max_age_s`` seconds of arrival time, and at most ``max_keys``
keys (oldest forgotten first), so memory stays bounded whatever the input rate: about 120 bytes
a key (a 128-bit fingerprint, its time, the dict entry), so ~120 MB for a million keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from marketdata.records import Tick

_MASK: Final = (1 << 64) - 1


def fingerprint(tick: Tick) -> int:
    """128 bits standing for the tick's unique key (two independent 64-bit hashes).

    Python's hash is seeded per process, which is all a window needs: it is filled and read by
    one process, and rebuilt from the output topic after a restart.
    """
    key = tick.key
    return ((hash(key) & _MASK) << 64) | (hash((key, "mdp")) & _MASK)


class SeenWindow:
    def __init__(
        self, max_keys: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self.max_age_s = max_age_s
        self.clock = clock
        self._seen: dict[int, float] = {}  # insertion-ordered: oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: int) -> bool:
        return key in self._seen

    def admit(self, ticks: list[Tick]) -> list[Tick]:
        """The ticks whose keys are new (each once), remembering them; duplicates are dropped."""
        now = self.clock()
        seen = self._seen
        fresh = []
        for tick in ticks:
            key = fingerprint(tick)
            if key not in seen:
                seen[key] = now
                fresh.append(tick)
        self._expire(now)
        return fresh

    def seen_before(self, key: int) -> bool:
        """Remember one key; True when it was already remembered (a replay)."""
        if key in self._seen:
            return True
        now = self.clock()
        self._seen[key] = now
        self._expire(now)
        return False

    def forget(self, key: int) -> None:
        self._seen.pop(key, None)

    def remember(self, ticks: list[Tick]) -> None:
        """Add keys already emitted (when rebuilding from the output topic)."""
        self.admit(ticks)

    def _expire(self, now: float) -> None:
        seen = self._seen
        excess = len(seen) - self.max_keys
        horizon = now - self.max_age_s
        for key in list(_oldest(seen, excess, horizon)):
            del seen[key]


def _oldest(seen: dict[int, float], excess: int, horizon: float) -> list[int]:
    """Keys to forget: the ``excess`` oldest, and any older than ``horizon``."""
    doomed = []
    for key, at in seen.items():
        if excess > 0:
            excess -= 1
        elif at >= horizon:
            break
        doomed.append(key)
    return doomed

"""Capped exponential backoff with jitter, shared by every role that retries."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays of ``initial * factor**n`` seconds, capped at ``maximum``, each scaled by a random
    factor in ``[1 - jitter, 1]`` so that many clients do not retry in step."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5
    attempts: int = field(default=0, init=False)

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return delay * (1 - self.jitter * random.random())  # noqa: S311 - not cryptographic

    def reset(self) -> None:
        self.attempts = 0

"""Times of a test's own, so that e2e tests sharing one database never share a series' rows."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta


def own_minute() -> datetime:
    """A random minute in 2021, aligned to a minute (and so to 5 s bars)."""
    minutes = random.Random(uuid.uuid4().int).randrange(500_000)
    return datetime(2021, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)

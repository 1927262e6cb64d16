"""Logging set up once per process, at the entry point."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Final

# Libraries that retry on their own and log every attempt: while a broker is away aiokafka
# reports each reconnect (several a second) at ERROR.
CHATTY: Final = ("aiokafka",)
REPEAT_WINDOW_S: Final = 10.0


class RepeatFilter(logging.Filter):
    """Lets one line of each kind (logger and message template) through per window and counts
    the rest, so an outage reads as a line every few seconds, not a flood that hides the others."""

    def __init__(
        self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.clock = clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CHATTY):
            return True
        kind = (record.name, record.msg)
        now = self.clock()
        shown_at, suppressed = self._last.get(kind, (None, 0))
        if shown_at is not None and now - shown_at < self.window_s:
            self._last[kind] = (shown_at, suppressed + 1)
            return False
        if len(self._last) > 1000:  # bounded whatever the messages
            self._last.clear()
        self._last[kind] = (now, 0)
        if suppressed:
            record.msg = (
                f"{record.msg} ({suppressed} more like it in the last {self.window_s:.0f} s)"
            )
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka reports every transient coordinator hiccup at ERROR, and Alembic narrates its
    # plugins and context at INFO; our own lines say what matters.
    quieter = max(logging.getLevelName(level), logging.WARNING)
    for noisy in ("aiokafka", "alembic"):
        logging.getLogger(noisy).setLevel(quieter)

"""A local, fsynced spool for alerts that Kafka did not acknowledge in time.

Entries are appended to ``spool.log`` (one JSON line each, fsynced before the alert is
acknowledged); ``spool.done`` holds how many entries have reached Kafka (rewritten atomically
after each one). Replay sends the pending entries in order, each awaited, so the topic gets
them in the order they were taken and, but for a crash between an acknowledgement and the
rewrite of ``spool.done``, once. When everything is replayed the files are reset.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from marketdata.errors import MarketDataError

log = logging.getLogger(__name__)


class SpoolUnavailable(MarketDataError):
    """The spool is full or cannot be written: the alert cannot be made durable."""


@dataclass(frozen=True, slots=True)
class Entry:
    number: int
    key: bytes
    value: bytes


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.log = directory / "spool.log"
        self.done_file = directory / "spool.done"
        self._entries: list[Entry] = []
        self._done = 0

    def open(self) -> None:
        """Load what a previous run left (entries not yet replayed). An unusable directory is
        not fatal: Kafka may take every alert; the health check says the spool is not writable."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("webhook spool %s unusable: %s", self.directory, exc.strerror)
            return
        if self.log.exists():
            for number, line in enumerate(self.log.read_text().splitlines()):
                try:
                    item = json.loads(line)
                except ValueError:
                    break  # a torn last line: that alert was never acknowledged
                self._entries.append(
                    Entry(number, base64.b64decode(item["k"]), base64.b64decode(item["v"]))
                )
        if self.done_file.exists():
            self._done = int(self.done_file.read_text().strip() or 0)

    @property
    def depth(self) -> int:
        return len(self._entries) - self._done

    def writable(self) -> bool:
        return (
            self.directory.is_dir()
            and os.access(self.directory, os.W_OK)
            and self._size() < self.max_bytes
        )

    def _size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def append(self, key: bytes, value: bytes) -> None:
        """Make one alert durable, or raise :class:`SpoolUnavailable`."""
        line = json.dumps(
            {"k": base64.b64encode(key).decode(), "v": base64.b64encode(value).decode()}
        )
        if not self.directory.is_dir():
            raise SpoolUnavailable(f"spool directory {self.directory} unusable")
        if self._size() + len(line) + 1 > self.max_bytes:
            raise SpoolUnavailable("spool full")
        try:
            with self.log.open("a") as spool:
                spool.write(line + "\n")
                spool.flush()
                os.fsync(spool.fileno())
        except OSError as exc:
            raise SpoolUnavailable(f"spool not writable: {exc.strerror}") from None
        self._entries.append(Entry(len(self._entries), key, value))

    def pending(self) -> list[Entry]:
        return self._entries[self._done :]

    def mark_done(self, entry: Entry) -> None:
        self._done = entry.number + 1
        if self._done == len(self._entries):
            self.log.unlink(missing_ok=True)
            self.done_file.unlink(missing_ok=True)
            self._entries, self._done = [], 0
            return
        partial = self.done_file.with_suffix(".tmp")
        partial.write_text(f"{self._done}\n")
        os.replace(partial, self.done_file)

"""A local, fsynced spool for alerts that Kafka did not acknowledge in time.

Entries are appended to ``spool.bin`` as frames, each fsynced before the alert is acknowledged:

    b"MDPS" | payload length (u32) | CRC-32 of length and payload (u32) | payload

with the payload ``key length (u32) | key | value``. A crash in the middle of an append leaves a
torn last frame: opening the spool finds it (short, or failing its checksum, with no whole frame
after it) and truncates it, so later appends never follow garbage. A damaged frame elsewhere
is skipped with an error in the log and counted (``corrupt_frames``); the frames after it are
found again by their marker and checksum, so one bad frame never hides the good ones behind it.

``spool.offset`` holds how far (in bytes) the entries have reached Kafka, rewritten atomically
after each one. Replay sends the pending entries in order, each awaited, so the topic gets them
in the order they were taken; a crash between Kafka's acknowledgement and that rewrite sends the
entry again (same alert, same id). When everything is replayed the files are reset.

The directory is made ``0700`` and the files ``0600``: alerts are the user's trading signals.
A spool of the earlier format (``spool.log``: JSON lines, ``spool.done``: a count) is migrated
into frames on open.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from marketdata.errors import MarketDataError

log = logging.getLogger(__name__)

MAGIC: Final = b"MDPS"
_HEAD: Final = struct.Struct(">4sII")  # marker, payload length, CRC-32
_KEY: Final = struct.Struct(">I")


class SpoolUnavailable(MarketDataError):
    """The spool is full or cannot be written: the alert cannot be made durable."""


@dataclass(frozen=True, slots=True)
class Entry:
    end: int  # the byte offset just after this entry's frame
    key: bytes
    value: bytes


def frame(key: bytes, value: bytes) -> bytes:
    payload = _KEY.pack(len(key)) + key + value
    size = len(payload).to_bytes(4, "big")
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload, zlib.crc32(size))) + payload


def _frame_at(data: bytes, at: int) -> tuple[bytes, bytes, int] | None:
    """The key, value and end of a whole, intact frame starting at ``at``, else None."""
    if len(data) - at < _HEAD.size:
        return None
    marker, length, crc = _HEAD.unpack_from(data, at)
    start = at + _HEAD.size
    end = start + length
    if marker != MAGIC or end > len(data) or length < _KEY.size:
        return None
    payload = data[start:end]
    if zlib.crc32(payload, zlib.crc32(length.to_bytes(4, "big"))) != crc:
        return None
    (key_length,) = _KEY.unpack_from(payload)
    if _KEY.size + key_length > length:
        return None
    key_end = _KEY.size + key_length
    return payload[_KEY.size : key_end], payload[key_end:], end


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.path = directory / "spool.bin"
        self.offset_file = directory / "spool.offset"
        self.corrupt_frames = 0
        self._entries: list[Entry] = []
        self._next = 0  # index of the first entry not yet in Kafka
        self._size = 0
        self._fd: int | None = None
        self._unusable: str | None = "not opened"
        self._full = False

    def open(self) -> None:
        """Load what a previous run left (entries not yet replayed). An unusable directory is
        not fatal: Kafka may take every alert; the health check says the spool is unusable."""
        try:
            self._load()
        except OSError as exc:
            # Whatever was loaded is still replayed; only new alerts are refused.
            self._unusable = f"{self.directory}: {exc.strerror}"
            log.error("webhook spool unusable: %s", self._unusable)
            self.close()
            return
        self._unusable = None
        self._migrate()

    def _load(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._private(self.directory, 0o700)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(self._fd, 0o600)
        self._size = self._recover(self._fd, self.path.read_bytes())
        done = self._read_offset()
        self._next = sum(1 for entry in self._entries if entry.end <= done)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def _private(path: Path, mode: int) -> None:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)

    def _recover(self, fd: int, data: bytes) -> int:
        """Take every intact frame; truncate a torn tail; return the file's size."""
        at = 0
        while at < len(data):
            found = _frame_at(data, at)
            if found is not None:
                key, value, at = found
                self._entries.append(Entry(at, key, value))
                continue
            resume = self._next_frame(data, at)
            if resume is None:
                # Nothing whole after it: an append cut short, never acknowledged.
                log.warning("webhook spool: dropped a torn last frame (%d bytes)", len(data) - at)
                os.ftruncate(fd, at)
                os.fsync(fd)
                return at
            self.corrupt_frames += 1
            log.error("webhook spool: skipped %d damaged bytes at offset %d", resume - at, at)
            at = resume
        return at

    @staticmethod
    def _next_frame(data: bytes, after: int) -> int | None:
        at = data.find(MAGIC, after + 1)
        while at != -1:
            if _frame_at(data, at) is not None:
                return at
            at = data.find(MAGIC, at + 1)
        return None

    def _read_offset(self) -> int:
        try:
            text = self.offset_file.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.error(
                "webhook spool: %s unreadable (%s); replaying all", exc.filename, exc.strerror
            )
            return 0
        if not text.isdigit() or int(text) > self._size:
            log.error("webhook spool: bad replay offset %r; replaying all", text[:40])
            return 0
        return int(text)

    def _migrate(self) -> None:
        """Move the pending entries of a spool of the earlier JSON-lines format into frames."""
        old, old_done = self.directory / "spool.log", self.directory / "spool.done"
        if not old.exists():
            old_done.unlink(missing_ok=True)
            return
        try:
            entries = _old_entries(old.read_bytes())
            done = int(old_done.read_text().strip() or 0) if old_done.exists() else 0
        except OSError as exc:
            log.error("webhook spool: spool.log unreadable: %s", exc.strerror)
            return
        except ValueError:
            done = 0  # a damaged count: everything again, never less
        try:
            for key, value in entries[done:]:
                self.append(key, value)
        except SpoolUnavailable as exc:
            # Left in place and migrated again by the next open: repeats, never losses.
            log.error("webhook spool: could not migrate spool.log: %s", exc)
            return
        log.warning("webhook spool: migrated %d pending alerts", len(entries[done:]))
        # Unlinked in this order, a crash in between leaves no count without its log.
        old.unlink()
        old_done.unlink(missing_ok=True)

    @property
    def depth(self) -> int:
        return len(self._entries) - self._next

    def problem(self) -> str | None:
        """Why the spool cannot take an alert now (for /health), or None."""
        if self._fd is None:
            return f"not writable ({self._unusable})"
        if self._full:
            return f"full (MDP_WEBHOOK_SPOOL_MAX_BYTES={self.max_bytes})"
        return None

    def writable(self) -> bool:
        return self.problem() is None

    def append(self, key: bytes, value: bytes) -> None:
        """Make one alert durable, or raise :class:`SpoolUnavailable`."""
        record = frame(key, value)
        if self._fd is None:
            raise SpoolUnavailable(f"spool unusable: {self._unusable}")
        if self._size + len(record) > self.max_bytes:
            self._full = True
            raise SpoolUnavailable("spool full")
        try:
            written = 0
            while written < len(record):
                written += os.write(self._fd, record[written:])
            os.fsync(self._fd)
        except OSError as exc:
            # Cut the partial frame off, so that the next append does not follow it (if this
            # fails too, the next open does it).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise SpoolUnavailable(f"spool not writable: {exc.strerror}") from None
        self._size += len(record)
        self._entries.append(Entry(self._size, key, value))

    def pending(self) -> list[Entry]:
        return self._entries[self._next :]

    def mark_done(self, entry: Entry) -> None:
        self._next = self._entries.index(entry, self._next) + 1
        try:
            if self._next == len(self._entries):
                self._reset()
                return
            partial = self.offset_file.with_suffix(".tmp")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(f"{entry.end}\n")
            os.replace(partial, self.offset_file)
        except OSError as exc:
            # Replay goes on; only a restart would send these alerts again (same ids).
            log.error("webhook spool: replay progress not recorded: %s", exc.strerror)

    def _reset(self) -> None:
        # The offset goes first: a crash before the truncation then replays (duplicates, same
        # ids) rather than skipping alerts appended after it. If either fails, the entries stay
        # (all done), so the offsets of later appends stay true.
        self.offset_file.unlink(missing_ok=True)
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        self._entries, self._next, self._size, self._full = [], 0, 0, False


def _old_entries(data: bytes) -> list[tuple[bytes, bytes]]:
    """Entries of a ``spool.log`` of the JSON-lines format. A torn line may have the next append
    glued to it: the last entry that starts in such a line is still read."""
    entries = []
    for line in data.decode("utf-8", "replace").splitlines():
        for start in (0, line.rfind('{"k": ')):
            try:
                item = json.loads(line[start:]) if start >= 0 else None
                if isinstance(item, dict):
                    entries.append((base64.b64decode(item["k"]), base64.b64decode(item["v"])))
                    break
            except (ValueError, KeyError, TypeError, binascii.Error):
                continue
        else:
            log.error(
                "webhook spool: skipped an unreadable line of spool.log (%d chars)", len(line)
            )
    return entries

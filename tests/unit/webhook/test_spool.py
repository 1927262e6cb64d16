from __future__ import annotations

from pathlib import Path

import pytest

from webhook.spool import Spool, SpoolUnavailable


def test_entries_survive_a_reopen_and_replay_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.open()
    for n in range(3):
        spool.append(b"k", f"alert {n}".encode())
    spool.mark_done(spool.pending()[0])
    again = Spool(tmp_path, max_bytes=10_000)
    again.open()
    assert [e.value for e in again.pending()] == [b"alert 1", b"alert 2"]
    for entry in again.pending():
        again.mark_done(entry)
    assert again.depth == 0
    assert not (tmp_path / "spool.log").exists()  # drained: the files are reset


def test_a_torn_last_line_is_not_an_alert(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000)
    spool.open()
    spool.append(b"k", b"whole")
    with (tmp_path / "spool.log").open("a") as log:
        log.write('{"k": "aw')  # a crash in the middle of an append that was never acknowledged
    reopened = Spool(tmp_path, max_bytes=10_000)
    reopened.open()
    assert [e.value for e in reopened.pending()] == [b"whole"]


def test_a_full_or_unwritable_spool_refuses(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=200)
    spool.open()
    spool.append(b"k", b"x" * 50)
    with pytest.raises(SpoolUnavailable, match="full"):
        spool.append(b"k", b"x" * 200)
    blocked = Spool(tmp_path / "file-not-dir" / "spool", max_bytes=10_000)
    (tmp_path / "file-not-dir").write_text("")
    blocked.open()  # not fatal: Kafka may take every alert
    assert not blocked.writable()
    with pytest.raises(SpoolUnavailable, match="unusable"):
        blocked.append(b"k", b"v")

from __future__ import annotations

import base64
import json
import logging
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.spool import Spool, SpoolUnavailable, frame


def _opened(directory: Path, max_bytes: int = 100_000) -> Spool:
    spool = Spool(directory, max_bytes)
    spool.open()
    return spool


def _with_alerts(directory: Path, count: int) -> Spool:
    """An open spool holding ``count`` entries: key ``k``, values ``alert 0``, ``alert 1``…"""
    spool = _opened(directory)
    for n in range(count):
        spool.append(b"k", f"alert {n}".encode())
    return spool


def _values(spool: Spool) -> list[bytes]:
    return [entry.value for entry in spool.pending()]


def test_entries_survive_a_reopen_and_replay_in_order(tmp_path: Path) -> None:
    spool = _with_alerts(tmp_path, 3)
    spool.mark_done(spool.pending()[0])
    spool.close()
    again = _opened(tmp_path)
    assert _values(again) == [b"alert 1", b"alert 2"]
    assert [e.key for e in again.pending()] == [b"k", b"k"]
    for entry in again.pending():
        again.mark_done(entry)
    assert again.depth == 0
    assert (tmp_path / "spool.bin").stat().st_size == 0  # drained: the files are reset
    assert not (tmp_path / "spool.offset").exists()
    again.append(b"k", b"after the reset")
    again.close()
    assert _values(_opened(tmp_path)) == [b"after the reset"]


@pytest.mark.parametrize("kept", [1, 5, 13, len(frame(b"k", b"torn alert")) - 1])
def test_a_torn_last_frame_is_cut_and_later_appends_are_whole(tmp_path: Path, kept: int) -> None:
    spool = _opened(tmp_path)
    spool.append(b"k", b"whole")
    spool.close()
    with (tmp_path / "spool.bin").open("ab") as file:
        file.write(frame(b"k", b"torn alert")[:kept])  # a crash in the middle of an append
    reopened = _opened(tmp_path)
    assert _values(reopened) == [b"whole"]
    for n in range(5):
        reopened.append(b"k", f"acknowledged {n}".encode())
    reopened.close()
    assert _values(_opened(tmp_path)) == [b"whole"] + [f"acknowledged {n}".encode()
                                                      for n in range(5)]  # fmt: skip


def test_a_damaged_frame_in_the_middle_is_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = _with_alerts(tmp_path, 3)
    spool.close()
    data = bytearray((tmp_path / "spool.bin").read_bytes())
    second = len(frame(b"k", b"alert 0"))
    data[second + 14] ^= 0xFF  # a flipped bit in the second frame's payload
    (tmp_path / "spool.bin").write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, "webhook.spool"):
        reopened = _opened(tmp_path)
    assert _values(reopened) == [b"alert 0", b"alert 2"]  # the one after it is not lost
    assert reopened.corrupt_frames == 1
    assert "skipped" in caplog.text


# Spooled values are JSON text: printable, so none can hold a frame header of its own.
_json_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@given(st.lists(_json_text.map(str.encode), min_size=1, max_size=6), st.data())
def test_any_cut_or_damage_loses_only_the_frame_it_touches(
    values: list[bytes], data: st.DataObject
) -> None:
    frames = [frame(b"key", value) for value in values]
    ends = [sum(map(len, frames[: n + 1])) for n in range(len(frames))]
    blob = bytearray(b"".join(frames))
    at = data.draw(st.integers(0, len(blob) - 1))
    touched = next(n for n, end in enumerate(ends) if at < end)
    if data.draw(st.booleans()):
        del blob[at:]  # a torn tail: the frames from the touched one on were never whole
        expected = values[:touched]
    else:
        blob[at] ^= data.draw(st.integers(1, 255))  # damage inside one frame
        expected = values[:touched] + values[touched + 1 :]
    with tempfile.TemporaryDirectory() as directory:  # hypothesis: no function-scoped tmp_path
        (Path(directory) / "spool.bin").write_bytes(bytes(blob))
        spool = _opened(Path(directory))
        assert _values(spool) == expected
        spool.append(b"key", b"next")
        spool.close()
        assert _values(_opened(Path(directory))) == [*expected, b"next"]


def test_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    spool = _opened(directory)
    spool.append(b"k", b"v")
    spool.append(b"k", b"w")
    spool.mark_done(spool.pending()[0])  # writes spool.offset
    spool.close()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_spool_of_the_earlier_json_lines_format_is_migrated(tmp_path: Path) -> None:
    def line(value: bytes) -> str:
        return json.dumps({"k": base64.b64encode(b"k").decode(),
                           "v": base64.b64encode(value).decode()})  # fmt: skip

    torn = line(b"never acknowledged")[:9]
    # The earlier format glued the append after a torn line to it: that entry is still read.
    text = "\n".join([line(b"a0"), line(b"a1"), torn + line(b"a2"), line(b"a3")]) + "\n"
    (tmp_path / "spool.log").write_text(text)
    (tmp_path / "spool.done").write_text("1\n")
    spool = _opened(tmp_path)
    assert _values(spool) == [b"a1", b"a2", b"a3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spool.bin"]
    spool.close()
    assert _values(_opened(tmp_path)) == [b"a1", b"a2", b"a3"]


def test_a_full_or_unwritable_spool_refuses(tmp_path: Path) -> None:
    spool = _opened(tmp_path, max_bytes=200)
    spool.append(b"k", b"x" * 50)
    assert spool.problem() is None
    with pytest.raises(SpoolUnavailable, match="full"):
        spool.append(b"k", b"x" * 200)
    assert spool.problem() == "full (MDP_WEBHOOK_SPOOL_MAX_BYTES=200)"
    spool.mark_done(spool.pending()[0])  # drained: room again
    assert spool.problem() is None
    (tmp_path / "file-not-dir").write_text("")
    blocked = _opened(tmp_path / "file-not-dir" / "spool")  # not fatal: Kafka may take all
    assert not blocked.writable()
    assert (blocked.problem() or "").startswith("not writable")
    with pytest.raises(SpoolUnavailable, match="unusable"):
        blocked.append(b"k", b"v")


def test_replay_goes_on_when_its_progress_cannot_be_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = _with_alerts(tmp_path, 3)
    spool.offset_file = tmp_path / "gone" / "spool.offset"  # its directory vanished
    with caplog.at_level(logging.ERROR, "webhook.spool"):
        for entry in spool.pending():
            spool.mark_done(entry)
    assert spool.depth == 0
    assert "replay progress not recorded" in caplog.text
    spool.append(b"k", b"later")
    assert _values(spool) == [b"later"]

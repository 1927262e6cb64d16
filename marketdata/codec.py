"""Compact JSON for Kafka values: one envelope with a schema version and a batch of records.

A message holds one record or a small batch of records of one instrument, always in the same
envelope, so every consumer reads single records and batches alike::

    {"kind":"ticks","v":1,"records":[{...},{...}]}

Decoding validates every record (see ``marketdata.records``); anything that does not decode
raises :class:`DecodeError` with a reason fit for a dead-letter header. ``decode`` is total: no
input, however deep, long or malformed, raises anything else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import msgspec

from marketdata.errors import DecodeError
from marketdata.records import Bar, RecordDecoder, Tick

SCHEMA_VERSION: Final = 1
# Far above any batch the pipeline makes (Kafka's default message limit is 1 MiB).
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
_REASON_CHARS: Final = 500  # a reason quoting a 20,000-digit value stays a readable header


class TickBatch(msgspec.Struct, frozen=True, tag="ticks", tag_field="kind"):
    v: int
    records: list[Tick]


class BarBatch(msgspec.Struct, frozen=True, tag="bars", tag_field="kind"):
    v: int
    records: list[Bar]


Batch = TickBatch | BarBatch

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = RecordDecoder[Batch](Batch)
# msgspec's constraint errors end with the path of the field: the reason names it up front,
# as the records' own errors do ("symbol: ...").
_FIELD_PATH: Final = re.compile(r" - at `\$\.records\[\d+\]\.(\w+)[^`]*`$")


def encode_ticks(records: Sequence[Tick]) -> bytes:
    return _encoder.encode(TickBatch(v=SCHEMA_VERSION, records=list(records)))


def encode_bars(records: Sequence[Bar]) -> bytes:
    return _encoder.encode(BarBatch(v=SCHEMA_VERSION, records=list(records)))


def _named(problem: str) -> str:
    field = _FIELD_PATH.search(problem)
    if field is None or problem.startswith(f"{field[1]}: "):
        return problem
    return f"{field[1]}: {problem}"


def _short(exc: BaseException | str) -> str:
    text = str(exc)
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS] + "…"


def decode(data: bytes | None) -> Batch:
    """Decode one Kafka value; raise :class:`DecodeError` saying why when it is not a batch."""
    if not data:
        raise DecodeError("empty message value")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        batch: Batch = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid record: {_short(_named(str(exc)))}") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"malformed JSON: {_short(exc)}") from None
    except RecursionError:
        raise DecodeError("nested too deeply to decode") from None
    except Exception as exc:  # the one boundary every consumer relies on: nothing escapes
        raise DecodeError(f"undecodable: {type(exc).__name__}: {_short(exc)}") from None
    if batch.v != SCHEMA_VERSION:
        raise DecodeError(
            f"unsupported schema version {batch.v} (this build reads {SCHEMA_VERSION})"
        )
    if not batch.records:
        raise DecodeError("batch holds no records")
    return batch

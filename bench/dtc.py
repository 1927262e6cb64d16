"""DTC decoding and normalisation, binary against JSON against raw ``struct.unpack``, one run.

    .venv/bin/python -m bench.dtc --output .notes/dtc-bench.md

Per core (CPU time of this process): the same generated ``MARKET_DATA_UPDATE_TRADE`` messages
(a random walk of prices, several trades per millisecond) as binary frames and as JSON frames;
``struct.unpack_from`` of the binary frames with the trade's own format is the baseline. Then
each encoding decoded by the client's codec, alone and with normalisation to ``Tick`` records,
and the binary byte stream cut by the framer, decoded and normalised: what the producer runs.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bench.report import benchmark_parser, command_line, run_benchmark
from marketdata.settings import Settings
from producers.dtc import messages as m
from producers.dtc.codec import BinaryFramer, decode_binary, decode_json, encode_binary, encode_json
from producers.dtc.normalise import Instrument, Occurrences, trade

SECTION = "## DTC producer (bench/dtc.py)"
INSTRUMENT = Instrument("ESZ4", "CME")


def _rate(work: Callable[[], object], count: int) -> float:
    started = time.process_time()
    work()
    return count / (time.process_time() - started)


def trades(count: int) -> list[dict[str, object]]:
    rng = random.Random(9)
    price, at = 5000.0, 1709303400.0
    out: list[dict[str, object]] = []
    for _ in range(count):
        price += rng.choice((-0.25, 0.0, 0.25))
        at += rng.choice((0.0, 0.001, 0.004))
        side = rng.choice((m.AT_BID, m.AT_ASK))
        volume = float(rng.randint(1, 20))
        out.append({"Type": m.MARKET_DATA_UPDATE_TRADE, "SymbolID": 1, "AtBidOrAsk": side,
                    "Price": price, "Volume": volume, "DateTime": round(at, 3)})  # fmt: skip
    return out


def rates(binary: Sequence[bytes], json_frames: Sequence[bytes]) -> dict[str, float]:
    received = datetime.now(UTC)
    raw = m.SPECS[m.MARKET_DATA_UPDATE_TRADE].layout  # "<HHIH6xddd": the header's layout
    stream = b"".join(binary)

    def unpack() -> None:
        for frame in binary:
            raw.unpack_from(frame)

    def binary_decode() -> None:
        for frame in binary:
            decode_binary(frame)

    def json_decode() -> None:
        for frame in json_frames:
            decode_json(frame)

    def binary_normalise() -> None:
        occurrences = Occurrences()
        for frame in binary:
            trade(decode_binary(frame), INSTRUMENT, received, occurrences)

    def json_normalise() -> None:
        occurrences = Occurrences()
        for frame in json_frames:
            trade(decode_json(frame), INSTRUMENT, received, occurrences)

    def stream_normalise() -> None:
        occurrences, framer = Occurrences(), BinaryFramer()
        for start in range(0, len(stream), 65536):
            for frame in framer.feed(stream[start : start + 65536]):
                trade(decode_binary(frame), INSTRUMENT, received, occurrences)

    count = len(binary)
    return {
        "struct.unpack_from, binary (baseline)": _rate(unpack, count),
        "decode_binary": _rate(binary_decode, count),
        "decode_json": _rate(json_decode, count),
        "decode_binary + normalise to Tick": _rate(binary_normalise, count),
        "decode_json + normalise to Tick": _rate(json_normalise, count),
        "64 KiB reads → framer → decode_binary → Tick (the producer's path)": _rate(
            stream_normalise, count
        ),
    }


async def measure(args: argparse.Namespace, _: Settings) -> str:
    messages = trades(args.messages)
    binary = [encode_binary(message) for message in messages]
    json_frames = [encode_json(message) for message in messages]
    measured = rates(binary, json_frames)
    baseline = next(iter(measured.values()))
    ratio = (
        measured["decode_binary + normalise to Tick"] / measured["decode_json + normalise to Tick"]
    )
    version = ".".join(map(str, sys.version_info[:3]))
    lines = [
        SECTION,
        "",
        f"Command: `{command_line('bench.dtc')}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; Python {version}.",
        "",
        f"{args.messages:,} `MARKET_DATA_UPDATE_TRADE` messages ({len(binary[0])} bytes binary, "
        f"~{sum(map(len, json_frames)) // len(json_frames)} bytes JSON), CPU time of one core:",
        "",
        "| path | messages/s | vs struct.unpack |",
        "| --- | ---: | ---: |",
        *[
            f"| {name} | {rate / 1000:,.1f}k | {rate / baseline:.3f}x |"
            for name, rate in measured.items()
        ],
        "",
        f"Normalised, binary runs at {ratio:.2f}x the JSON encoding's rate; building the validated "
        "`Tick` (Decimal prices, UTC datetime, "
        "derived trade id) costs more than decoding either encoding.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--messages", type=int, default=200_000, help="trades to decode")
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()

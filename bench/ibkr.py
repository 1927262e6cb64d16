"""IB tick normalisation against the raw decode of the same TWS messages, in one run.

    .venv/bin/python -m bench.ibkr

Per core (CPU time): tick-by-tick AllLast messages built from the recorded trades
(sandbox/fixtures/ibkr/trades.json), as the bytes of one TWS frame each, are (1) decoded and
split into fields, what ib_async's socket reader does (the baseline); (2) also run through
ib_async's own decoder and wrapper, what a producer built on its Ticker objects would pay;
(3) decoded and normalised to records with the exchange's time (``tick_by_tick``, what the
producer runs); (4) also encoded into envelopes of 100 (``encode_ticks``), as published.
Results go to BENCHMARKS.md; no services needed.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ib_async import IB, Stock, Ticker

from bench.report import benchmark_parser, command_line, run_benchmark
from marketdata.codec import encode_ticks
from marketdata.records import Tick
from marketdata.settings import Settings
from producers.ibkr.normalise import TickIds, tick_by_tick
from sandbox.tws import recorded_trades
from sandbox.tws_wire import frame

SECTION = "## Interactive Brokers producer (bench/ibkr.py)"
REQ_ID = 7


def messages(count: int) -> list[bytes]:
    """``count`` AllLast frames' payloads (without the 4-byte length), one second apart."""
    rows = recorded_trades()["AAPL"]
    return [frame(99, REQ_ID, 2, 1_709_305_200 + n, *(rows[n % len(rows)][k] for k in
                  ("price", "size", "mask", "venue", "conditions")))[4:]
            for n in range(count)]  # fmt: skip


def _rate(work: Callable[[], object], count: int) -> float:
    started = time.process_time()
    work()
    return count / (time.process_time() - started)


def rates(payloads: Sequence[bytes]) -> dict[str, float]:
    received = datetime.now(UTC)
    ib = IB()
    ticker = Ticker(contract=Stock("AAPL", "SMART", "USD"))
    ib.wrapper.reqId2Ticker[REQ_ID] = ticker
    decoder = ib.client.decoder

    def split() -> None:
        for payload in payloads:
            payload.decode(errors="backslashreplace").split("\0")[:-1]

    def ib_async_decoder() -> None:
        for payload in payloads:
            fields = payload.decode(errors="backslashreplace").split("\0")[:-1]
            decoder.interpret(fields)  # type: ignore[no-untyped-call]
            ticker.tickByTicks.clear()

    def normalise() -> None:
        ids = TickIds()
        for payload in payloads:
            fields = payload.decode(errors="backslashreplace").split("\0")[:-1]
            tick_by_tick(fields, "AAPL", received, ids)

    def normalise_encode() -> None:
        ids, batch = TickIds(), list[Tick]()
        for payload in payloads:
            fields = payload.decode(errors="backslashreplace").split("\0")[:-1]
            batch += tick_by_tick(fields, "AAPL", received, ids)
            if len(batch) == 100:
                encode_ticks(batch)
                batch = []

    return {
        "decode + split into fields (baseline)": _rate(split, len(payloads)),
        "ib_async decoder + wrapper (float prices, arrival time)": _rate(
            ib_async_decoder, len(payloads)
        ),
        "decode + normalise (what the producer runs)": _rate(normalise, len(payloads)),
        "decode + normalise + encode, envelopes of 100": _rate(normalise_encode, len(payloads)),
    }


async def measure(args: argparse.Namespace, _: Settings) -> str:
    payloads = messages(args.messages)
    measured = rates(payloads)
    baseline = next(iter(measured.values()))
    return "\n".join([
        SECTION,
        "",
        f"Command: `{command_line('bench.ibkr')}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}.",
        "",
        f"{args.messages:,} tick-by-tick AllLast messages (TWS frames of ~50 bytes), CPU time of"
        " one core:",
        "",
        "| path | messages/s | vs decode + split |",
        "| --- | ---: | ---: |",
        *[f"| {name} | {rate / 1000:,.1f}k | {rate / baseline:.2f}x |"
          for name, rate in measured.items()],
        "",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--messages", type=int, default=200_000, help="messages to normalise")
    run_benchmark(parser, measure, SECTION, argv)


if __name__ == "__main__":
    main()
